"""Deadlines: when a human answer is due, and what happens when none came.

- An item gets a deadline when it arrives for review: its own (``deadline`` or
  ``deadline_seconds`` at ingest) or its queue's ``deadline_seconds``. Auto-accepted
  items have none. A queue's setting applies to items that arrive after it is set.
- Claims take items due soonest first within a priority (``routing.claim_order``).
- ``warn_seconds`` before the deadline: an ``item.deadline_near`` event and webhook.
- At the deadline the queue's ``on_deadline`` fallback applies, in one transaction that
  locks the item: ``accept`` (the model's output stands) and ``reject`` (with the
  queue's ``deadline_reason``) make the item final as ``timed_out``, decided by
  "system" with source "deadline", sent as the usual ``item.decided`` webhook;
  ``escalate`` moves it to ``escalate_to``, waiting afresh there (its history stays:
  events and earlier reviews keep their rows); ``keep`` only marks it late. Each is an
  ``item.deadline_passed`` event.
- A fallback is never a review: no ``reviews`` row, so agreement, reviewer figures and
  evaluation exports never count it, and the quality advisor sees the item as
  unreviewed (its status is not a human verdict). The reviewer who held the item may
  still decide it: that decision is kept as a review made after the deadline
  (``decisions._late``), exported flagged ``after_deadline``.

The work runs as a background job (``background.py``) in every process: each item is
handled in a transaction of its own under its row lock and re-checked there, so
processes that look at the same item apply its fallback once, and a node that dies
delays nothing (no leader to wait for).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from . import clock, events, jobs, outbox, store
from .items import fallback_decision
from .models import Queue
from .routing import claim_order
from .store import queries
from .vocab import WAITING, DeadlineAction, EventKind, Source, Status

log = logging.getLogger(__name__)

#: Items handled per round; a full round goes again at once.
BATCH = 200
#: Seconds between rounds: a fallback lands within about this long of its deadline.
INTERVAL = 0.5


def run_round(engine) -> bool:
    """Warn what is near, apply what is due; whether more may be waiting."""
    engine = engine or store.get_engine()
    more = warn_near(engine)
    with store.read(engine) as tx:
        due = [r.id for r in queries.DEADLINES_DUE.rows(tx, {"now": clock.now(), "limit": BATCH})]
    for item_id in due:
        try:
            apply(item_id, engine=engine)
        except Exception:  # one item's trouble never holds up the others
            log.exception("deadline of item %s could not be applied; trying again next round", item_id)
    return more or len(due) == BATCH


def warn_near(engine) -> bool:
    """Send ``item.deadline_near`` for items within their queue's ``warn_seconds``."""
    with store.read(engine) as tx:
        warned = [
            (q.name, q.warn_seconds)
            for q in tx.execute(select(Queue.name, Queue.warn_seconds).where(Queue.warn_seconds.is_not(None)))
        ]
        now = clock.now()
        near = [
            item_id
            for name, seconds in warned
            for item_id in (
                r.id
                for r in queries.DEADLINES_NEAR.rows(
                    tx, {"queue": name, "horizon": now + timedelta(seconds=seconds), "limit": BATCH}
                )
            )
        ]
    for item_id in near:
        with store.write(engine) as tx:
            item = queries.ITEM_FOR_DEADLINE.first(tx, {"item_id": item_id})
            now = clock.now()
            if (
                not _open(item)
                or item.deadline_state != ""
                or not item.q_warn_seconds
                or item.deadline_at - timedelta(seconds=item.q_warn_seconds) > now
            ):
                continue  # decided, moved or warned meanwhile
            queries.MARK_WARNED.run(tx, {"item_id": item_id})
            left = max((item.deadline_at - now).total_seconds(), 0.0)
            events.record(
                tx,
                EventKind.ITEM_DEADLINE_NEAR,
                "system",
                item_id=item_id,
                queue=item.queue,
                after={"deadline_at": clock.iso(item.deadline_at), "seconds_left": round(left, 1)},
                at=now,
            )
            outbox.enqueue(
                tx,
                item,
                None,
                EventKind.ITEM_DEADLINE_NEAR,
                now=now,
                extra={"seconds_left": round(left, 1), "status": item.status},
            )
    return len(near) >= BATCH


def apply(item_id: str, *, engine=None) -> str | None:
    """Apply the queue's fallback to one item whose deadline has passed; what was done
    (a ``DeadlineAction``), or ``None`` when there was nothing to do (decided meanwhile,
    not due yet, handled by another process)."""
    with store.write(engine) as tx:
        item = queries.ITEM_FOR_DEADLINE.first(tx, {"item_id": item_id})
        now = clock.now()
        if not _open(item) or item.deadline_state == "passed" or item.deadline_at > now:
            return None
        action = DeadlineAction(item.q_on_deadline or DeadlineAction.KEEP)
        why = None
        if action == DeadlineAction.ESCALATE:
            why = _escalation_problem(tx, item)
            if why:
                action = DeadlineAction.KEEP  # the item stays, late; the event says why
        before = {"status": item.status, "queue": item.queue, "lease_holder": item.lease_holder}
        if action.verdict is not None:
            row = queries.TIME_OUT.first(
                tx,
                {
                    "item_id": item_id,
                    "action": action,
                    "reason": item.q_deadline_reason if action == DeadlineAction.REJECT else None,
                    "now": now,
                },
            )
            decision = fallback_decision(row)
            after = {
                "status": Status.TIMED_OUT,
                "action": action,
                "verdict": decision.verdict,
                "reason": decision.reason,
                "source": Source.DEADLINE,
            }
            kind, review = EventKind.ITEM_DECIDED, decision
            store.announce_final(tx, item_id)
        elif action == DeadlineAction.ESCALATE:
            target = tx.session.get(Queue, item.q_escalate_to)
            due = now + timedelta(seconds=target.deadline_seconds) if target.deadline_seconds else None
            row = queries.ESCALATE.first(
                tx,
                {
                    "item_id": item_id,
                    "queue": target.name,
                    "action": action,
                    "deadline_at": due,
                    "claim_order": claim_order(item.priority, item.confidence, item.id, due),
                    "now": now,
                },
            )
            after = {"status": Status.PENDING, "action": action, "queue": target.name}
            if due is not None:
                after["deadline_at"] = clock.iso(due)
            kind, review = EventKind.ITEM_DEADLINE_PASSED, None
        else:
            row = queries.PASSED.first(tx, {"item_id": item_id, "action": action, "now": now})
            after = {"status": item.status, "action": action} | ({"why": why} if why else {})
            kind, review = EventKind.ITEM_DEADLINE_PASSED, None
        events.record(
            tx,
            EventKind.ITEM_DEADLINE_PASSED,
            "system",
            item_id=item_id,
            queue=item.queue,
            before=before,
            after={"deadline_at": clock.iso(item.deadline_at), **after},
            at=now,
        )
        # The app hears of it from the item's old queue's webhooks (it posted there);
        # an escalated item's later decision goes to the new queue's.
        outbox.enqueue(
            tx,
            item if action == DeadlineAction.ESCALATE else row,
            review,
            kind,
            now=now,
            extra={"action": action, "status": row.status, "moved_to": after.get("queue")},
        )
        return action


def _open(item) -> bool:
    """Still waiting for a human, with a deadline (re-checked under the row lock: another
    process, or a reviewer, may have got there first)."""
    return item is not None and item.status in WAITING and item.deadline_at is not None


def _escalation_problem(tx, item) -> str | None:
    target = tx.session.get(Queue, item.q_escalate_to) if item.q_escalate_to else None
    if target is None:
        return f"escalate_to queue {item.q_escalate_to!r} does not exist"
    if item.external_id is not None and queries.EXTERNAL_ID_TAKEN.first(
        tx, {"queue": target.name, "external_id": item.external_id}
    ):
        return f"queue {target.name!r} already holds an item with external_id {item.external_id!r}"
    return None


def deadline_job() -> jobs.Job:
    return jobs.Job("deadlines", run_round, interval=INTERVAL, led=False)


def due_soon(queue: str, seconds: float, *, engine=None) -> int:
    """How many of the queue's waiting items are due within ``seconds``."""
    with store.read(engine) as tx:
        horizon = clock.now() + timedelta(seconds=seconds)
        return queries.DEADLINES_SOON.first(tx, {"queue": queue, "horizon": horizon}).n
