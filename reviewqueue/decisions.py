"""Decisions: a reviewer's verdict on an item they hold, the rules a verdict must keep,
and undo.

The rules (:func:`check`):
- ``approve`` keeps the model's output and predicted label;
- ``correct`` changes the output or (on classification queues) the label: the
  correction is what the item should have been;
- ``reject`` needs one of the queue's reject reasons and has no output.

A decision is a row of its own in ``reviews``; recording one writes that row, the
item's new status, an ``item.decided`` event and the webhook notifications (the outbox)
in one transaction, so a verdict never commits without its notification.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError

from . import claims, clock, consensus, events, outbox, redaction, store, structured, textdiff
from .errors import Conflict, ItemNotFound, PermissionDenied, ValidationFailed, invalid
from .items import get_in, to_out
from .schemas import DecisionIn, ItemOut, ReviewOut
from .store import queries
from .vocab import EventKind, Role, Status, Verdict


class Rules(NamedTuple):
    """What a queue allows a decision to say."""

    labels: list[str]
    reject_reasons: list[str]
    #: Structured outputs: the JSON Schema a correction must validate against.
    output_schema: dict | None = None
    #: The item's own schema (a tool call's arguments), checked as well.
    item_schema: dict | None = None


def _decision(value: DecisionIn | dict[str, Any]) -> DecisionIn:
    if isinstance(value, DecisionIn):
        return value
    try:
        return DecisionIn.model_validate(value)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def check(rules: Rules, item, d: DecisionIn) -> tuple[Any, str | None]:
    """Apply the queue's rules to a decision on ``item``; return the (final_output,
    final_label) to store."""
    if d.final_label is not None and rules.labels and d.final_label not in rules.labels:
        raise invalid(
            "final_label",
            f"label {d.final_label!r} is not one of the queue's labels: {', '.join(rules.labels)}",
        )
    if d.verdict == Verdict.APPROVE:
        if d.final_output is not None and d.final_output != item.output:
            raise invalid(
                "final_output", "an approval keeps the model's output; a changed output is a correction"
            )
        if d.final_label is not None and d.final_label != item.predicted_label:
            raise invalid(
                "final_label", "an approval keeps the predicted label; a changed label is a correction"
            )
        return item.output, item.predicted_label
    if d.verdict == Verdict.CORRECT:
        final_label = item.predicted_label if d.final_label is None else d.final_label
        if d.final_output is not None:
            final_output = d.final_output
        elif rules.labels and item.output == item.predicted_label:
            # A classifier whose output is its label: the corrected label is the
            # corrected output too, so the reference never contradicts itself.
            final_output = final_label
        else:
            final_output = item.output
        if rules.labels and item.output == item.predicted_label and final_output != final_label:
            raise invalid(
                "final_label", "on this queue the output is the label: correct the label, not the text"
            )
        if final_output == item.output and final_label == item.predicted_label:
            changed = "the output or the label" if rules.labels else "the output"
            raise invalid("final_output", f"a correction must change {changed}; this one changes nothing")
        if isinstance(final_output, str) and not final_output.strip():
            raise invalid("final_output", "the corrected output is empty; an unusable output is a rejection")
        for schema in (rules.output_schema, rules.item_schema):
            check = structured.validator(schema)
            if check is None:
                continue
            if isinstance(final_output, str):
                raise invalid(
                    "final_output", "this queue takes structured outputs: correct the JSON, not text"
                )
            problems = structured.errors(check, final_output, ["final_output"])
            if problems:
                raise ValidationFailed.of(problems)
        return final_output, final_label
    if not d.reason:
        raise invalid("reason", f"a rejection needs a reason, one of: {', '.join(rules.reject_reasons)}")
    if d.reason not in rules.reject_reasons:
        raise invalid(
            "reason",
            f"reason {d.reason!r} is not one of the queue's reasons: {', '.join(rules.reject_reasons)}",
        )
    if d.final_output is not None:
        raise invalid("final_output", "a rejection has no final output; a fixed output is a correction")
    return None, None


def decide(item_id: str, reviewer: str, decision: DecisionIn | dict[str, Any], *, engine=None) -> ReviewOut:
    """Record ``reviewer``'s verdict on an item they hold; the stored decision."""
    return _decide(item_id, reviewer, decision, engine)[1]


def decide_item(
    item_id: str, reviewer: str, decision: DecisionIn | dict[str, Any], *, engine=None
) -> ItemOut:
    """Like :func:`decide`, returning the decided item with its decision."""
    row, review = _decide(item_id, reviewer, decision, engine)
    if row.final_review_id is None:
        return to_out(row)  # not final yet: more reviewers, or a lead, decide
    if row.final_review_id == review.id:
        return to_out(row, review)
    from .items import get

    return get(item_id, engine=engine)


def _decide(item_id: str, reviewer: str, decision, engine):
    d = _decision(decision)
    with store.write(engine) as tx:
        item = claims.held_item(tx, item_id, reviewer, queries.ITEM_AND_RULES_FOR_UPDATE, late_ok=True)
        # Read the clock after the transaction's first statement: decided_at and
        # updated_at are then never earlier than the transaction's start, which exports
        # and polls rely on to know when every change before a moment has committed
        # (store.settled_before). Every write to items reads it so.
        now = clock.now()
        if item.status == Status.TIMED_OUT:
            return _late(tx, item, reviewer, d, now)
        review = _insert_review(tx, item, reviewer, d, now, adjudication=False)
        if item.q_reviews_required <= 1:
            return _final(tx, item, review, reviewer, now, done=1, agreement=1.0), review
        return _counted(tx, item, review, reviewer, now), review


def _late(tx, item, reviewer: str, d: DecisionIn, now):
    """A decision by the reviewer who held the item when its deadline fallback decided
    it: stored as a review made after the deadline (evaluation data, flagged so), sent as
    ``item.reviewed_after_deadline`` so the app can repair what it did. The fallback's
    answer stays the item's decision."""
    review = _insert_review(tx, item, reviewer, d, now, adjudication=False, after_deadline=True)
    row = queries.LATE_DECIDED.first(tx, {"item_id": item.id, "now": now, "review_id": review.id})
    events.record(
        tx,
        EventKind.ITEM_REVIEWED_AFTER_DEADLINE,
        reviewer,
        item_id=item.id,
        queue=item.queue,
        before={"status": item.status, "deadline_action": item.deadline_action},
        after={"verdict": review.verdict, "review_id": review.id, "after_deadline": True},
        at=now,
    )
    outbox.enqueue(tx, row, review, EventKind.ITEM_REVIEWED_AFTER_DEADLINE, now=now)
    return row, review


def _insert_review(
    tx, item, reviewer: str, d: DecisionIn, now, *, adjudication: bool, after_deadline: bool = False
) -> ReviewOut:
    """Check ``d`` against the queue's rules and store it as a review row. What the
    reviewer wrote (a correction, a comment) is redacted as the model's text was."""
    rules = Rules(
        item.q_labels or [],
        item.q_reject_reasons or [],
        getattr(item, "q_output_schema", None),
        getattr(item, "output_schema", None),
    )
    final_output, final_label = check(rules, item, d)
    changed_fields = (
        structured.changed(item.output, final_output)
        if d.verdict == Verdict.CORRECT
        and not isinstance(item.output, str)
        and not isinstance(final_output, str)
        else None
    )
    comment = d.comment
    redactor = redaction.redactor(item.q_redaction or [])
    if redactor is not None:
        removed = Counter()
        final_output = redactor.value(final_output, removed)
        if comment:
            comment = redactor.text(comment, removed)
        if removed:
            total = Counter(item.redactions or {})
            total.update(removed)
            queries.SET_REDACTIONS.run(tx, {"item_id": item.id, "redactions": dict(total)})
    row = queries.INSERT_REVIEW.first(
        tx,
        {
            "item_id": item.id,
            "queue": item.queue,
            "reviewer": reviewer,
            "verdict": d.verdict,
            "final_output": final_output,
            "final_label": final_label,
            "reason": d.reason,
            "comment": comment,
            "seconds_spent": d.seconds_spent,
            "now": now,
            "edit_distance": textdiff.decision_distance(d.verdict, item.output, final_output),
            "adjudication": adjudication,
            "after_deadline": after_deadline,
            "changed_fields": changed_fields,
        },
    )
    return ReviewOut(**row._asdict())


def _final(tx, item, final: ReviewOut, actor: str, now, *, done: int, agreement: float, **extra):
    """Make ``final`` the item's final decision: status, event, webhooks."""
    status = Verdict(final.verdict).status
    changed = queries.DECIDED.first(
        tx,
        {
            "item_id": item.id,
            "status": status,
            "now": now,
            "review_id": final.id,
            "done": done,
            "agreement": agreement,
        },
    )
    row = item._replace(**changed._asdict())
    events.record(
        tx,
        EventKind.ITEM_DECIDED,
        actor,
        item_id=item.id,
        queue=item.queue,
        before={"status": item.status},
        after={"status": status, "verdict": final.verdict, "review_id": final.id, **extra},
        at=now,
    )
    outbox.enqueue(tx, row, final, EventKind.ITEM_DECIDED, now=now)
    store.announce_final(tx, item.id)  # apps waiting on it (waiting.py) hear at commit
    return row


def _counted(tx, item, review: ReviewOut, reviewer: str, now):
    """One of several decisions an item needs: wait for the next reviewer, settle the
    item when this was the last one needed, or send it to a lead (consensus.py)."""
    reviews = [
        ReviewOut(**r._asdict()) for r in queries.ACTIVE_REVIEWS.rows(tx, {"item_id": item.id, "no": False})
    ]
    if sum(r.reviewer == reviewer for r in reviews) > 1:
        raise Conflict(f"{reviewer} has already decided item {item.id}; another reviewer must decide it")
    done, required = len(reviews), item.q_reviews_required
    progress = {
        "verdict": review.verdict,
        "review_id": review.id,
        "reviews_done": done,
        "reviews_required": required,
    }
    if done < required:
        changed = queries.AWAITING.first(
            tx,
            {
                "item_id": item.id,
                "status": Status.PENDING,
                "now": now,
                "done": done,
                "claim_order": in_progress(item.claim_order),
            },
        )
        events.record(
            tx,
            EventKind.ITEM_REVIEWED,
            reviewer,
            item_id=item.id,
            queue=item.queue,
            before={"status": Status.IN_REVIEW},
            after={"status": Status.PENDING, **progress},
            at=now,
        )
        return item._replace(**changed._asdict())
    outcome = consensus.settle(reviews, item.q_consensus, bool(item.q_labels))
    if outcome.final is not None:
        return _final(
            tx, item, outcome.final, reviewer, now, done=done, agreement=outcome.agreement, **progress
        )
    changed = queries.AWAITING.first(
        tx,
        {
            "item_id": item.id,
            "status": Status.DISPUTED,
            "now": now,
            "done": done,
            "claim_order": item.claim_order,
        },
    )
    events.record(
        tx,
        EventKind.ITEM_DISPUTED,
        reviewer,
        item_id=item.id,
        queue=item.queue,
        before={"status": Status.IN_REVIEW},
        after={"status": Status.DISPUTED, "why": outcome.why, **progress},
        at=now,
    )
    return item._replace(**changed._asdict())


def in_progress(claim_order: str) -> str:
    """The claim order of an item part-way through its reviews: before the fresh items of
    its priority ("-" sorts before the digits of a confidence), so it is finished first
    and a reviewer who decided it passes over few such items."""
    return claim_order if claim_order[4] == "-" else f"{claim_order[:4]}-{claim_order[4:]}"


def undo(review_id: int, reviewer: str, *, queues: list[str] | None = None, engine=None) -> ItemOut:
    """Take back the reviewer's decision within the undo window (``REVIEWQUEUE_UNDO_SECONDS``),
    if nobody has acted on the item since. The review row stays, marked ``undone_at``;
    the item goes back to the reviewer under a fresh lease. ``queues`` limits it to
    decisions in those queues (a queue-limited API token)."""
    with store.write(engine) as tx:
        window = store.settings_of(tx.engine).undo_seconds
        row = queries.REVIEW_FOR_UPDATE.first(tx, {"review_id": review_id})
        now = clock.now()
        if row is None or row.reviewer != reviewer or (queues and row.queue not in queues):
            raise Conflict("there is no decision of yours to undo")
        review = ReviewOut(**row._asdict())
        if review.undone_at is not None:
            raise Conflict("that decision was already undone")
        if now - review.created_at > timedelta(seconds=window):
            raise Conflict(f"decisions can be undone for {window} seconds; this one is older")
        item = queries.ITEM_FOR_UPDATE.first(tx, {"item_id": review.item_id})
        if item.status == Status.TIMED_OUT:
            raise Conflict(
                "the item's deadline fallback decided it; a decision made after it stays on record"
            )
        if item.final_review_id is not None:
            # Final: only by the one decision that made it so (a queue of one reviewer).
            if item.final_review_id != review.id or item.reviews_done != 1:
                raise Conflict("the item's final decision is made; it cannot be undone")
        elif item.status == Status.IN_REVIEW and item.lease_holder not in (None, reviewer):
            raise Conflict(f"{item.lease_holder} is reviewing the item now; it cannot be undone meanwhile")
        elif item.status not in (Status.PENDING, Status.DISPUTED, Status.IN_REVIEW):
            raise Conflict("the item changed since your decision; it cannot be undone")
        expires = now + timedelta(
            seconds=queries.LEASE_SECONDS.first(tx, {"queue": item.queue}).lease_seconds
        )
        queries.MARK_UNDONE.run(tx, {"review_id": review_id, "now": now})
        review.undone_at = now
        row = queries.UNDECIDE.first(
            tx,
            {
                "item_id": item.id,
                "reviewer": reviewer,
                "now": now,
                "expires": expires,
                "done": max((item.reviews_done or 1) - 1, 0),
            },
        )
        events.record(
            tx,
            EventKind.ITEM_DECISION_UNDONE,
            reviewer,
            item_id=item.id,
            queue=item.queue,
            before={"status": item.status, "review_id": review.id},
            after={"status": Status.IN_REVIEW},
            at=now,
        )
        if item.final_review_id is not None:  # the app was told of the decision: tell it of the undo
            outbox.enqueue(tx, row, review, EventKind.ITEM_DECISION_UNDONE, now=now)
        return to_out(row)


# --- adjudication -------------------------------------------------------------------


def adjudicate(
    item_id: str,
    lead: str,
    decision: DecisionIn | dict[str, Any] | None = None,
    *,
    pick: int | None = None,
    engine=None,
) -> ItemOut:
    """A lead's (or admin's) final decision on a disputed item: their own ``decision``,
    or the reviewer's decision ``pick`` (a review id) taken as it is. The adjudication is
    a review row of its own (``adjudication``); the reviewers' rows stay as they were."""
    from . import users

    who = users.get(lead, engine=engine)
    if who is None or not who.active or not Role(who.role).at_least(Role.LEAD):
        raise PermissionDenied(f"{lead} cannot adjudicate: leads and admins settle disagreements")
    if (decision is None) == (pick is None):
        raise invalid("decision", "give either a decision or the id of the review to pick, not both")
    with store.write(engine) as tx:
        item = queries.ITEM_AND_RULES_FOR_UPDATE.first(tx, {"item_id": item_id})
        if item is None:
            raise ItemNotFound(item_id)
        if item.status != Status.DISPUTED:
            raise Conflict(f"item {item_id} is {item.status}, not disputed: there is nothing to settle")
        now = clock.now()
        reviews = [
            ReviewOut(**r._asdict())
            for r in queries.ACTIVE_REVIEWS.rows(tx, {"item_id": item_id, "no": False})
        ]
        if pick is not None:
            chosen = next((r for r in reviews if r.id == pick), None)
            if chosen is None:
                raise invalid("pick", f"review {pick} is not one of this item's decisions")
            decision = {
                "verdict": chosen.verdict,
                "reason": chosen.reason,
                **({"final_output": chosen.final_output} if chosen.verdict == Verdict.CORRECT else {}),
                **({"final_label": chosen.final_label} if chosen.verdict == Verdict.CORRECT else {}),
            }
        d = _decision(decision)
        final = _insert_review(tx, item, lead, d, now, adjudication=True)
        agreement = consensus.agreement_with(reviews, final, bool(item.q_labels))
        events.record(
            tx,
            EventKind.ITEM_ADJUDICATED,
            lead,
            item_id=item_id,
            queue=item.queue,
            before={"status": Status.DISPUTED, "reviews": [r.id for r in reviews]},
            after={"verdict": d.verdict, "review_id": final.id, "picked": pick, "agreement": agreement},
            at=now,
        )
        _final(tx, item, final, lead, now, done=len(reviews), agreement=agreement, adjudicated=True)
        return get_in(tx, item_id)


def disputes(queue: str, *, limit: int = 100, engine=None) -> list[ItemOut]:
    """Items of ``queue`` waiting for a lead, oldest first, each with its decisions."""
    from sqlalchemy import select

    from .items import get
    from .models import Item

    with store.read(engine) as tx:
        ids = list(
            tx.session.scalars(
                select(Item.id)
                .where(Item.queue == queue, Item.status == Status.DISPUTED)
                .order_by(Item.updated_at, Item.id)
                .limit(limit)
            )
        )
    return [get(i, engine=engine) for i in ids]
