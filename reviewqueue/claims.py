"""Claims: which reviewer holds which item, and until when.

- A reviewer claims the most urgent pending item of a queue (higher priority, then
  lower confidence, then older: ``items.claim_order``) and holds it for the queue's
  ``lease_seconds``. No two reviewers ever hold the same item: the claim is one
  statement that locks what it takes (``store/queries.py``), and
  ``tests/test_concurrency.py`` counts it on both databases.
- A reviewer who already holds a live lease in the queue gets that item back, renewed.
- Expired leases are swept back to ``pending`` (an ``item.lease_expired`` event) by the
  next claim in their queue.
- A queue that needs several decisions per item (``reviews_required``) hands an item out
  again after each decision, one reviewer at a time (sequential leases), and never to a
  reviewer who decided it already; a queue with ``reviewers`` set hands items only to
  them (docs/architecture.md says why sequential).
- Only the holder may renew, release (skip) or decide an item (:func:`held_item`). A
  holder whose lease ran out may still do so while nobody else has claimed the item
  since: their late decision overwrites nobody's work.
"""

from __future__ import annotations

from datetime import timedelta

from . import clock, events, store
from .errors import Conflict, DeadlinePassed, ItemNotFound, LeaseLost, NotAssigned, QueueNotFound
from .items import to_out
from .schemas import ItemOut
from .store import queries
from .vocab import DECIDED, EventKind, Status


def claim_next(
    queue: str,
    reviewer: str,
    *,
    exclude: list[str] | tuple = (),
    lease_seconds: int | None = None,
    engine=None,
) -> ItemOut | None:
    """Lease the most urgent pending item of ``queue`` to ``reviewer``; ``None`` when
    nothing is waiting. ``exclude`` passes over items (those the reviewer skipped);
    ``lease_seconds`` asks for a lease shorter than the queue's."""
    with store.write(engine) as tx:
        rules = queries.CLAIM_RULES.first(tx, {"queue": queue})
        if rules is None:
            raise QueueNotFound(queue)
        if rules.reviewers and reviewer not in rules.reviewers:
            raise NotAssigned(queue, reviewer)
        # The clock is read after the transaction's first statement: see decisions._decide.
        now = clock.now()
        expires = now + timedelta(seconds=_lease(rules.lease_seconds, lease_seconds))
        own = _sweep_leases(tx, queue, reviewer, now)
        if own is not None:
            return to_out(queries.RENEW.first(tx, {"item_id": own, "expires": expires, "now": now}))
        params = {"queue": queue, "reviewer": reviewer, "expires": expires, "now": now}
        if rules.reviews_required > 1:  # never an item this reviewer decided already
            row = queries.LEASE_NEXT_UNDECIDED.first(tx, {**params, "exclude": list(exclude)})
        elif exclude:
            row = queries.LEASE_NEXT_EXCLUDING.first(tx, {**params, "exclude": list(exclude)})
        else:
            row = queries.LEASE_NEXT.first(tx, params)
        if row is None:
            return None
        events.record(
            tx,
            EventKind.ITEM_CLAIMED,
            reviewer,
            item_id=row.id,
            queue=queue,
            before={"status": Status.PENDING},
            after={"status": Status.IN_REVIEW, "lease_expires_at": clock.iso(expires)},
            at=now,
        )
        return to_out(row)


def _sweep_leases(tx: store.Tx, queue: str, reviewer: str, now) -> str | None:
    """Put the queue's expired leases back; return the id of ``reviewer``'s live lease."""
    leased = queries.LEASES.rows(tx, {"queue": queue, "reviewer": reviewer, "now": now})
    for row in leased:
        if row.lease_holder == reviewer and row.lease_expires_at > now:
            return row.id
    for row in leased:  # all expired
        queries.EXPIRE.run(tx, {"item_id": row.id, "now": now})
        events.record(
            tx,
            EventKind.ITEM_LEASE_EXPIRED,
            "system",
            item_id=row.id,
            queue=queue,
            before={"status": Status.IN_REVIEW, "lease_holder": row.lease_holder},
            after={"status": Status.PENDING},
            at=now,
        )
    return None


def held_item(tx: store.Tx, item_id: str, reviewer: str, statement=queries.ITEM_FOR_UPDATE, *, late_ok=False):
    """The item row, locked, if ``reviewer`` holds its lease; otherwise why not.
    ``late_ok``: also a timed-out item this reviewer held when its deadline passed (their
    decision is kept as a late review: decisions.py)."""
    row = statement.first(tx, {"item_id": item_id})
    if row is None:
        raise ItemNotFound(item_id)
    if row.status == Status.TIMED_OUT:
        if late_ok and row.lease_holder == reviewer and row.final_review_id is None:
            return row
        raise DeadlinePassed(item_id, row.deadline_action)
    if row.status in DECIDED:
        raise Conflict(f"item {item_id} was already decided ({row.status}); nothing to do")
    if row.status == Status.DISPUTED:
        raise Conflict(f"item {item_id} is waiting for a lead to settle its reviewers' disagreement")
    if row.status in (Status.IN_REVIEW, Status.PENDING) and row.lease_holder == reviewer:
        return row  # held, or its lease ran out and nobody else has claimed it since
    if row.status == Status.IN_REVIEW:
        raise LeaseLost(
            f"you do not hold item {item_id}: its lease expired and it is now held by {row.lease_holder}"
        )
    if row.status == Status.PENDING:
        raise LeaseLost(f"you do not hold item {item_id}: it went back to the queue")
    raise LeaseLost(f"item {item_id} is {row.status} and cannot be reviewed")


def _lease(queue_seconds: int, asked: int | None) -> int:
    return queue_seconds if asked is None else max(1, min(queue_seconds, asked))


def renew(item_id: str, reviewer: str, *, lease_seconds: int | None = None, engine=None) -> ItemOut:
    """Extend the reviewer's lease (the review app does this while the reviewer works)."""
    with store.write(engine) as tx:
        item = held_item(tx, item_id, reviewer)
        now = clock.now()
        queue_seconds = queries.LEASE_SECONDS.first(tx, {"queue": item.queue}).lease_seconds
        expires = now + timedelta(seconds=_lease(queue_seconds, lease_seconds))
        return to_out(queries.RENEW.first(tx, {"item_id": item_id, "expires": expires, "now": now}))


def release(item_id: str, reviewer: str, *, engine=None) -> ItemOut:
    """Give the item back to the queue (the reviewer skips it)."""
    with store.write(engine) as tx:
        held_item(tx, item_id, reviewer)
        now = clock.now()
        row = queries.RELEASE.first(tx, {"item_id": item_id, "now": now})
        events.record(
            tx,
            EventKind.ITEM_RELEASED,
            reviewer,
            item_id=item_id,
            queue=row.queue,
            before={"status": Status.IN_REVIEW},
            after={"status": Status.PENDING},
            at=now,
        )
        return to_out(row)


def release_all(reviewer: str, *, engine=None) -> int:
    """Give back every item ``reviewer`` holds, in every queue (signing out); how many."""
    from sqlalchemy import select

    from .models import Item, Queue

    with store.read(engine) as tx:
        names = list(tx.execute(select(Queue.name)).scalars())
        held = [
            item_id
            for name in names  # per queue: the claim index's (queue, status) prefix
            for item_id in tx.execute(
                select(Item.id).where(
                    Item.queue == name, Item.status == Status.IN_REVIEW, Item.lease_holder == reviewer
                )
            ).scalars()
        ]
    released = 0
    for item_id in held:
        try:
            release(item_id, reviewer, engine=engine)
            released += 1
        except (Conflict, LeaseLost):
            pass  # someone else has it now, or it was decided meanwhile
    return released
