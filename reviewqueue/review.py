"""Claiming, leasing and deciding: the reviewer's side of the queue.

The locking lives here and nowhere else:
- PostgreSQL: the next item is picked with ``SELECT ... FOR UPDATE SKIP LOCKED``
  inside the leasing ``UPDATE``, so concurrent reviewers each lock a different row
  without waiting on one another.
- SQLite: every write transaction begins ``BEGIN IMMEDIATE`` (see ``db.py``), so the
  look-then-update below runs under SQLite's single write lock.

Either way no two reviewers can hold the same item; ``tests/test_concurrency.py``
counts it. A lease lasts the queue's ``lease_seconds``; an expired lease is swept back
to ``pending`` (with an ``item.lease_expired`` event) by the next claim in that queue.
Only the current holder may decide, and only once.

The statements are built once at import, with bind parameters, and the hot ones run
through ``db.Prepared`` on the driver's cursor: this is the hot path (claim + decide
latency and API round trips are benchmarked targets), and on SQLite it runs inside the
single write lock that every API worker queues for, so each microsecond here is taken
from every other writer too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import bindparam, or_, select, update

from . import clock, events, textdiff
from .db import Prepared, writing
from .errors import Conflict, ItemNotFound, LeaseLost, QueueNotFound, ValidationFailed
from .items import to_out
from .models import DECIDED_STATUSES, VERDICT_STATUS, Item, Queue, Review
from .schemas import DecisionIn, ItemOut, ReviewOut
from .settings import get_settings

#: Called inside the decision's transaction with (conn, item row, ReviewOut, kind); the
#: webhook outbox registers here so a verdict and its notification commit together.
decision_listeners: list = []

items_t = Item.__table__
queues_t = Queue.__table__
reviews_t = Review.__table__
c = items_t.c

_QUEUE = select(queues_t).where(queues_t.c.name == bindparam("b_queue"))
_LEASE_SECONDS = Prepared(select(queues_t.c.lease_seconds).where(queues_t.c.name == bindparam("b_queue")))
# One look at the queue's leases: the reviewer's own live one, and expired ones.
_LEASES = Prepared(
    select(c.id, c.lease_holder, c.lease_expires_at)
    .where(c.queue == bindparam("b_queue"), c.status == "in_review",
           or_(c.lease_holder == bindparam("b_reviewer"), c.lease_expires_at <= bindparam("b_now")))
    .order_by(c.claim_order)
    .with_for_update(skip_locked=True)
)
_RENEW = Prepared(
    update(items_t).where(c.id == bindparam("b_item_id"))
    .values(lease_expires_at=bindparam("b_expires"), updated_at=bindparam("b_now")).returning(*c)
)
_EXPIRE = Prepared(
    update(items_t).where(c.id == bindparam("b_item_id"), c.status == "in_review")
    .values(status="pending", lease_holder=None, lease_expires_at=None, updated_at=bindparam("b_now"))
)


def _lease_next(exclude: bool):
    # Pick and lease in one statement. On PostgreSQL the subquery's SKIP LOCKED lets
    # concurrent claimers pass over each other's rows instead of queueing behind them.
    conditions = [c.queue == bindparam("b_queue"), c.status == "pending"]
    if exclude:
        conditions.append(c.id.not_in(bindparam("b_exclude", expanding=True)))
    next_id = (
        select(c.id).where(*conditions).order_by(c.claim_order).limit(1)
        .with_for_update(skip_locked=True).scalar_subquery()
    )
    return (
        update(items_t)
        .where(c.id == next_id, c.status == "pending")
        .values(status="in_review", lease_holder=bindparam("b_reviewer"), lease_expires_at=bindparam("b_expires"),
                updated_at=bindparam("b_now"))
        .returning(*c)
    )


_LEASE_NEXT = Prepared(_lease_next(exclude=False))
# Skipped items passed over (the review app's Skip): an expanding IN, so SQLAlchemy's path.
_LEASE_NEXT_EXCLUDING = _lease_next(exclude=True)
_ITEM_FOR_UPDATE = Prepared(select(items_t).where(c.id == bindparam("b_item_id")).with_for_update())
# The item with its queue's rules, in one round trip (the decision needs both).
_ITEM_AND_RULES_FOR_UPDATE = Prepared(
    select(items_t, queues_t.c.labels.label("q_labels"), queues_t.c.reject_reasons.label("q_reject_reasons"))
    .join(queues_t, queues_t.c.name == c.queue)
    .where(c.id == bindparam("b_item_id"))
    .with_for_update(of=items_t)
)
_RELEASE = Prepared(
    update(items_t).where(c.id == bindparam("b_item_id"))
    .values(status="pending", lease_holder=None, lease_expires_at=None, updated_at=bindparam("b_now"))
    .returning(*c)
)
_REVIEW_KEYS = ["item_id", "queue", "reviewer", "verdict", "final_output", "final_label", "reason", "comment",
                "seconds_spent", "created_at", "undone_at", "edit_distance"]
_INSERT_REVIEW = Prepared(reviews_t.insert().returning(*reviews_t.c), keys=_REVIEW_KEYS)
# No RETURNING: the decided row is the locked row read just before, with these values.
_DECIDED = Prepared(
    update(items_t).where(c.id == bindparam("b_item_id"))
    .values(status=bindparam("b_status"), lease_holder=None, lease_expires_at=None,
            decided_at=bindparam("b_now"), updated_at=bindparam("b_now"))
)
_REVIEW_FOR_UPDATE = select(reviews_t).where(reviews_t.c.id == bindparam("b_review_id")).with_for_update()
_MARK_UNDONE = update(reviews_t).where(reviews_t.c.id == bindparam("b_review_id")).values(undone_at=bindparam("b_now"))
_UNDECIDE = (
    update(items_t).where(c.id == bindparam("b_item_id"))
    .values(status="in_review", lease_holder=bindparam("b_reviewer"), decided_at=None,
            updated_at=bindparam("b_now"), lease_expires_at=bindparam("b_expires"))
    .returning(*c)
)

class _Rules(NamedTuple):
    labels: list[str]
    reject_reasons: list[str]


def _queue(conn, name: str):
    row = conn.execute(_QUEUE, {"b_queue": name}).first()
    if row is None:
        raise QueueNotFound(name)
    return row


def claim_next(queue: str, reviewer: str, *, exclude: list[str] | tuple = (), engine=None) -> ItemOut | None:
    """Lease the most urgent pending item of ``queue`` to ``reviewer``.

    Most urgent: higher priority, then lower confidence, then older. A reviewer who
    already holds a live lease in this queue gets that item back (lease renewed).
    ``exclude`` passes over items (those the reviewer just skipped). Returns ``None``
    when nothing is waiting.
    """
    with writing(engine) as conn:
        queue_row = _LEASE_SECONDS.first(conn, {"b_queue": queue})
        if queue_row is None:
            raise QueueNotFound(queue)
        now = clock.now()
        expires = now + timedelta(seconds=queue_row.lease_seconds)
        leased = _LEASES.rows(conn, {"b_queue": queue, "b_reviewer": reviewer, "b_now": now})
        for row in leased:
            if row.lease_holder == reviewer and row.lease_expires_at > now:
                return to_out(_RENEW.first(conn, {"b_item_id": row.id, "b_expires": expires, "b_now": now}))
        for row in leased:  # all expired now
            _EXPIRE.run(conn, {"b_item_id": row.id, "b_now": now})
            events.record(
                conn, "item.lease_expired", "system", item_id=row.id, queue=queue,
                before={"status": "in_review", "lease_holder": row.lease_holder}, after={"status": "pending"},
                at=now,
            )
        params = {"b_queue": queue, "b_reviewer": reviewer, "b_expires": expires, "b_now": now}
        if exclude:
            row = conn.execute(_LEASE_NEXT_EXCLUDING, {**params, "b_exclude": list(exclude)}).first()
        else:
            row = _LEASE_NEXT.first(conn, params)
        if row is None:
            return None
        events.record(
            conn, "item.claimed", reviewer, item_id=row.id, queue=queue,
            before={"status": "pending"}, after={"status": "in_review", "lease_expires_at": clock.iso(expires)},
            at=now,
        )
        return to_out(row)


def _held_item(conn, item_id: str, reviewer: str, statement=_ITEM_FOR_UPDATE):
    row = statement.first(conn, {"b_item_id": item_id})
    if row is None:
        raise ItemNotFound(item_id)
    if row.status in DECIDED_STATUSES:
        raise Conflict(f"item {item_id} was already decided ({row.status}); nothing to do")
    if row.status != "in_review" or row.lease_holder != reviewer:
        if row.status in ("in_review", "pending"):
            holder = f" and is now held by {row.lease_holder}" if row.lease_holder else ""
            raise LeaseLost(f"you do not hold item {item_id}: its lease expired{holder}; claim the next item")
        raise LeaseLost(f"item {item_id} is {row.status} and cannot be reviewed")
    return row


def renew(item_id: str, reviewer: str, *, engine=None) -> ItemOut:
    """Extend the reviewer's lease (the UI calls this while the reviewer works)."""
    with writing(engine) as conn:
        item = _held_item(conn, item_id, reviewer)
        now = clock.now()  # after the first statement, see _decide
        expires = now + timedelta(seconds=_queue(conn, item.queue).lease_seconds)
        return to_out(_RENEW.first(conn, {"b_item_id": item_id, "b_expires": expires, "b_now": now}))


def release(item_id: str, reviewer: str, *, engine=None) -> ItemOut:
    """Give the item back to the queue (the reviewer skips it)."""
    with writing(engine) as conn:
        _held_item(conn, item_id, reviewer)
        now = clock.now()  # after the first statement, see _decide
        row = _RELEASE.first(conn, {"b_item_id": item_id, "b_now": now})
        events.record(
            conn, "item.released", reviewer, item_id=item_id, queue=row.queue,
            before={"status": "in_review"}, after={"status": "pending"}, at=now,
        )
        return to_out(row)


def _decision(value: DecisionIn | dict[str, Any]) -> DecisionIn:
    if isinstance(value, DecisionIn):
        return value
    try:
        return DecisionIn.model_validate(value)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, [{"loc": [field], "msg": message, "type": "value_error"}])


def check_decision(queue, item, d: DecisionIn) -> tuple[Any, str | None]:
    """Apply the queue's rules; return the (final_output, final_label) to store."""
    if d.final_label is not None and queue.labels and d.final_label not in queue.labels:
        raise _invalid("final_label", f"label {d.final_label!r} is not one of the queue's labels: {', '.join(queue.labels)}")
    if d.verdict == "approve":
        if d.final_output is not None and d.final_output != item.output:
            raise _invalid("final_output", "an approval keeps the model's output; use verdict 'correct' to change it")
        if d.final_label is not None and d.final_label != item.predicted_label:
            raise _invalid("final_label", "an approval keeps the predicted label; use verdict 'correct' to change it")
        return item.output, item.predicted_label
    if d.verdict == "correct":
        final_output = item.output if d.final_output is None else d.final_output
        final_label = item.predicted_label if d.final_label is None else d.final_label
        if final_output == item.output and final_label == item.predicted_label:
            raise _invalid(
                "final_output",
                "a correction must change the output or the label; send the corrected text in final_output"
                + (" or a different final_label" if queue.labels else ""),
            )
        if isinstance(final_output, str) and not final_output.strip():
            raise _invalid("final_output", "the corrected output is empty; reject the item instead")
        return final_output, final_label
    if not d.reason:
        raise _invalid("reason", f"a rejection needs a reason, one of: {', '.join(queue.reject_reasons)}")
    if d.reason not in queue.reject_reasons:
        raise _invalid("reason", f"reason {d.reason!r} is not one of the queue's reasons: {', '.join(queue.reject_reasons)}")
    if d.final_output is not None:
        raise _invalid("final_output", "a rejection has no final output; use verdict 'correct' to fix the output")
    return None, None


def decide(item_id: str, reviewer: str, decision: DecisionIn | dict[str, Any], *, engine=None) -> ReviewOut:
    """Record ``reviewer``'s verdict on an item they hold. Writes the review, the item's
    new status, an event and any webhook notifications in one transaction."""
    return _decide(item_id, reviewer, decision, engine)[1]


def decide_item(item_id: str, reviewer: str, decision: DecisionIn | dict[str, Any], *, engine=None) -> ItemOut:
    """Like :func:`decide`, returning the decided item with its decision."""
    row, review = _decide(item_id, reviewer, decision, engine)
    return to_out(row, review)


def _decide(item_id: str, reviewer: str, decision, engine):
    d = _decision(decision)
    with writing(engine) as conn:
        item = _held_item(conn, item_id, reviewer, _ITEM_AND_RULES_FOR_UPDATE)
        # Read the clock after the transaction's first statement: decided_at and
        # updated_at are then never earlier than the transaction's start, which exports
        # and polls rely on to know when every change before a moment has committed
        # (db.pg_settled_before). Every write to items reads it so.
        now = clock.now()
        rules = _Rules(item.q_labels or [], item.q_reject_reasons or [])
        final_output, final_label = check_decision(rules, item, d)
        review = ReviewOut(**_INSERT_REVIEW.first(conn, {
            "item_id": item_id, "queue": item.queue, "reviewer": reviewer, "verdict": d.verdict,
            "final_output": final_output, "final_label": final_label, "reason": d.reason, "comment": d.comment,
            "seconds_spent": d.seconds_spent, "created_at": now, "undone_at": None,
            "edit_distance": textdiff.decision_distance(d.verdict, item.output, final_output),
        })._asdict())
        status = VERDICT_STATUS[d.verdict]
        _DECIDED.run(conn, {"b_item_id": item_id, "b_status": status, "b_now": now})
        row = item._replace(status=status, lease_holder=None, lease_expires_at=None, decided_at=now, updated_at=now)
        events.record(
            conn, "item.decided", reviewer, item_id=item_id, queue=item.queue,
            before={"status": "in_review"}, after={"status": status, "verdict": d.verdict, "review_id": review.id},
            at=now,
        )
        for listener in decision_listeners:
            listener(conn, row, review, "item.decided")
        return row, review


def undo(review_id: int, reviewer: str, *, engine=None) -> ItemOut:
    """Take back the reviewer's decision within ``REVIEWQUEUE_UNDO_SECONDS``, if nobody
    has acted on the item since. The review row stays, marked ``undone_at``; the item
    goes back to the reviewer under a fresh lease."""
    window = get_settings().undo_seconds
    with writing(engine) as conn:
        row = conn.execute(_REVIEW_FOR_UPDATE, {"b_review_id": review_id}).first()
        now = clock.now()  # after the first statement, see _decide
        if row is None or row.reviewer != reviewer:
            raise Conflict("there is no decision of yours to undo")
        review = ReviewOut(**row._mapping)
        if review.undone_at is not None:
            raise Conflict("that decision was already undone")
        if now - review.created_at > timedelta(seconds=window):
            raise Conflict(f"decisions can be undone for {window} seconds; this one is older")
        item = _ITEM_FOR_UPDATE.first(conn, {"b_item_id": review.item_id})
        if item.status != VERDICT_STATUS[review.verdict] or item.decided_at != review.created_at:
            raise Conflict("the item changed since your decision; it cannot be undone")
        expires = now + timedelta(seconds=_queue(conn, item.queue).lease_seconds)
        conn.execute(_MARK_UNDONE, {"b_review_id": review_id, "b_now": now})
        review.undone_at = now
        row = conn.execute(_UNDECIDE, {"b_item_id": item.id, "b_reviewer": reviewer, "b_now": now, "b_expires": expires}).one()
        events.record(
            conn, "item.decision_undone", reviewer, item_id=item.id, queue=item.queue,
            before={"status": item.status, "review_id": review.id}, after={"status": "in_review"}, at=now,
        )
        for listener in decision_listeners:
            listener(conn, row, review, "item.decision_undone")
        return to_out(row)
