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

from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError

from . import claims, clock, events, outbox, store, textdiff
from .errors import Conflict, ValidationFailed, invalid
from .items import to_out
from .schemas import DecisionIn, ItemOut, ReviewOut
from .store import queries
from .vocab import EventKind, Status, Verdict


class Rules(NamedTuple):
    """What a queue allows a decision to say."""

    labels: list[str]
    reject_reasons: list[str]


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
    return to_out(row, review)


def _decide(item_id: str, reviewer: str, decision, engine):
    d = _decision(decision)
    with store.write(engine) as tx:
        item = claims.held_item(tx, item_id, reviewer, queries.ITEM_AND_RULES_FOR_UPDATE)
        # Read the clock after the transaction's first statement: decided_at and
        # updated_at are then never earlier than the transaction's start, which exports
        # and polls rely on to know when every change before a moment has committed
        # (store.settled_before). Every write to items reads it so.
        now = clock.now()
        final_output, final_label = check(Rules(item.q_labels or [], item.q_reject_reasons or []), item, d)
        review = ReviewOut(
            **queries.INSERT_REVIEW.first(
                tx,
                {
                    "item_id": item_id,
                    "queue": item.queue,
                    "reviewer": reviewer,
                    "verdict": d.verdict,
                    "final_output": final_output,
                    "final_label": final_label,
                    "reason": d.reason,
                    "comment": d.comment,
                    "seconds_spent": d.seconds_spent,
                    "now": now,
                    "edit_distance": textdiff.decision_distance(d.verdict, item.output, final_output),
                },
            )._asdict()
        )
        status = Verdict(d.verdict).status
        changed = queries.DECIDED.first(tx, {"item_id": item_id, "status": status, "now": now})
        row = item._replace(**changed._asdict())
        events.record(
            tx,
            EventKind.ITEM_DECIDED,
            reviewer,
            item_id=item_id,
            queue=item.queue,
            before={"status": Status.IN_REVIEW},
            after={"status": status, "verdict": d.verdict, "review_id": review.id},
            at=now,
        )
        outbox.enqueue(tx, row, review, EventKind.ITEM_DECIDED, now=now)
        return row, review


def undo(review_id: int, reviewer: str, *, engine=None) -> ItemOut:
    """Take back the reviewer's decision within the undo window (``REVIEWQUEUE_UNDO_SECONDS``),
    if nobody has acted on the item since. The review row stays, marked ``undone_at``;
    the item goes back to the reviewer under a fresh lease."""
    with store.write(engine) as tx:
        window = store.settings_of(tx.engine).undo_seconds
        row = queries.REVIEW_FOR_UPDATE.first(tx, {"review_id": review_id})
        now = clock.now()
        if row is None or row.reviewer != reviewer:
            raise Conflict("there is no decision of yours to undo")
        review = ReviewOut(**row._asdict())
        if review.undone_at is not None:
            raise Conflict("that decision was already undone")
        if now - review.created_at > timedelta(seconds=window):
            raise Conflict(f"decisions can be undone for {window} seconds; this one is older")
        item = queries.ITEM_FOR_UPDATE.first(tx, {"item_id": review.item_id})
        if item.status != Verdict(review.verdict).status or item.decided_at != review.created_at:
            raise Conflict("the item changed since your decision; it cannot be undone")
        expires = now + timedelta(
            seconds=queries.LEASE_SECONDS.first(tx, {"queue": item.queue}).lease_seconds
        )
        queries.MARK_UNDONE.run(tx, {"review_id": review_id, "now": now})
        review.undone_at = now
        row = queries.UNDECIDE.first(
            tx, {"item_id": item.id, "reviewer": reviewer, "now": now, "expires": expires}
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
        outbox.enqueue(tx, row, review, EventKind.ITEM_DECISION_UNDONE, now=now)
        return to_out(row)
