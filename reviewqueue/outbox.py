"""The webhook outbox: what must be POSTed, written in the same transaction as the change.

A decision (or an undo) calls :func:`enqueue` inside its own unit of work, so a verdict
never commits without its notification, nor the other way round. Each body carries the
item's notification number (``sequence``). Delivery (``webhooks.py``), in any number of
processes: :func:`due` lists what may go now (one item's notifications to one webhook
in order), :func:`claim` takes one delivery, re-checking in the same statement that its
webhook is active and its item not erased, the worker POSTs it outside any transaction,
and :func:`finish` records that one outcome. Rows are kept after delivery: they are the
record of what was sent.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from . import clock, store
from .models import Webhook, WebhookDelivery
from .store import queries
from .vocab import DeliveryStatus, EventKind, Source

#: Attempts before a delivery is given up: at the 10-minute cap, roughly a day.
MAX_ATTEMPTS = 150
deliveries_t = WebhookDelivery.__table__
webhooks_t = Webhook.__table__


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s ... capped at 10 minutes."""
    return timedelta(seconds=min(600, 2 ** max(0, attempts - 1)))


def body(item, review, kind: EventKind, now: datetime, sequence: int, extra=None) -> tuple[str, str]:
    """``(event_id, the JSON body)`` of a notification about ``review`` of ``item`` (a
    review row, a ``DecisionOut``, or none for a deadline notice): the ``sequence``-th
    notification about that item. ``source`` says who answered: a reviewer, or the
    queue's deadline fallback (``reviewer`` "system")."""
    event_id = str(uuid.uuid4())
    decided_at = getattr(review, "created_at", None) or getattr(review, "decided_at", None)
    return event_id, json.dumps(
        {
            "event_id": event_id,
            "type": kind,
            "sequence": sequence,
            "item_id": item.id,
            "external_id": item.external_id,
            "queue": item.queue,
            "verdict": getattr(review, "verdict", None),
            "final_output": getattr(review, "final_output", None),
            "final_label": getattr(review, "final_label", None),
            "reason": getattr(review, "reason", None),
            "comment": getattr(review, "comment", None),
            "reviewer": getattr(review, "reviewer", None),
            "source": getattr(review, "source", Source.REVIEWER),
            "after_deadline": bool(getattr(review, "after_deadline", False)),
            "deadline_at": clock.iso(item.deadline_at) if getattr(item, "deadline_at", None) else None,
            "decided_at": clock.iso(decided_at) if decided_at else None,
            "sent_for": clock.iso(now),
            **(extra or {}),
        },
        ensure_ascii=False,
        sort_keys=True,
    )


def enqueue(tx: store.Tx, item, review, kind: EventKind, *, now: datetime, extra=None) -> None:
    """One delivery per active webhook of the item's queue, in ``tx`` (which holds the
    item's row lock: the item's next notification number is taken here)."""
    hooks = queries.ACTIVE_WEBHOOKS.rows(tx, {"queue": item.queue, "active": True})
    if not hooks:
        return
    sequence = queries.NEXT_WEBHOOK_SEQ.first(tx, {"item_id": item.id}).webhook_seq
    event_id, text = body(item, review, kind, now, sequence, extra)
    for hook in hooks:
        queries.INSERT_DELIVERY.run(
            tx,
            {
                "event_id": event_id,
                "webhook_id": hook.id,
                "item_id": item.id,
                "kind": kind,
                "body": text,
                "sequence": sequence,
                "now": now,
            },
        )


# --- delivery: one delivery at a time, re-checked as it is taken ----------------------


def due(engine, limit: int) -> list[tuple[int, int]]:
    """``(id, webhook_id)`` of up to ``limit`` deliveries due now, each the first still
    pending of its item for its webhook: one item's notifications go out in order, the
    next only once the one before it was delivered or given up."""
    with store.read(engine) as tx:
        return [
            (r.id, r.webhook_id)
            for r in queries.DUE_DELIVERIES.rows(tx, {"now": clock.now(), "limit": limit})
        ]


def claim(engine, delivery_id: int, lease: timedelta):
    """Take one delivery for sending, or ``None``: in one statement, it must still be
    pending, not taken by another worker, its webhook active and its item's content
    not erased or purged. Its next attempt moves past ``lease`` (a crashed worker's
    delivery comes due again) and ``sending_until`` marks it in flight: removing its
    webhook or erasing its item waits for it (:func:`wait_sent`). A delivery whose item
    was purged is cancelled here instead."""
    with store.write(engine) as tx:
        now = clock.now()
        row = queries.CLAIM_DELIVERY.first(tx, {"id": delivery_id, "now": now, "until": now + lease})
        if row is None:
            queries.CANCEL_PURGED_DELIVERY.run(tx, {"id": delivery_id})
        return row


def finish(engine, row, error: str | None) -> None:
    """Record one attempt of a delivery taken by :func:`claim`: delivered, or the error
    and when to try again (given up after :data:`MAX_ATTEMPTS`). A delivery cancelled
    meanwhile stays cancelled; either way it is no longer in flight."""
    with store.write(engine) as tx:
        now = clock.now()
        attempts = row.attempts + 1
        if error is None:
            status, next_at, delivered = DeliveryStatus.DELIVERED, None, now
        elif attempts >= MAX_ATTEMPTS:
            status, next_at, delivered = DeliveryStatus.FAILED, None, None
        else:
            status, next_at, delivered = DeliveryStatus.PENDING, now + backoff(attempts), None
        queries.FINISH_DELIVERY.run(
            tx,
            {
                "id": row.id,
                "status": status,
                "attempts": attempts,
                "error": None if error is None else error[:1000],
                "next_at": next_at,
                "delivered_at": delivered,
            },
        )


def postpone(engine, delivery_ids: list[int], until: datetime) -> None:
    """Deliveries not tried this round (their receiver is down): due again at ``until``,
    no attempt counted."""
    if not delivery_ids:
        return
    with store.write(engine) as tx:
        tx.execute(
            update(deliveries_t)
            .where(
                deliveries_t.c.id.in_(delivery_ids),
                deliveries_t.c.status == DeliveryStatus.PENDING,
                deliveries_t.c.sending_until.is_(None),
            )
            .values(next_attempt_at=until)
        )


def in_flight(engine, *, webhook_id: int | None = None, item_id: str | None = None) -> int:
    """Deliveries of a webhook (or about an item) a worker is sending right now."""
    where = [deliveries_t.c.sending_until.is_not(None), deliveries_t.c.sending_until > clock.now()]
    if webhook_id is not None:
        where.append(deliveries_t.c.webhook_id == webhook_id)
    if item_id is not None:
        where.append(deliveries_t.c.item_id == item_id)
    with store.read(engine) as tx:
        return tx.execute(select(func.count()).select_from(deliveries_t).where(*where)).scalar()


def wait_sent(engine, *, webhook_id: int | None = None, item_id: str | None = None, timeout: float) -> bool:
    """Wait until no delivery of the webhook (or about the item) is in flight; whether
    that happened within ``timeout`` seconds. Called after cancelling what was pending,
    so that once it returns nothing more is POSTed."""
    deadline = time.monotonic() + timeout
    while in_flight(engine, webhook_id=webhook_id, item_id=item_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def cancel(tx: store.Tx, *, webhook_id: int | None = None, item_id: str | None = None) -> int:
    """Cancel what is still pending for a webhook (or about an item), in ``tx``;
    returns how many."""
    where = [deliveries_t.c.status == DeliveryStatus.PENDING]
    if webhook_id is not None:
        where.append(deliveries_t.c.webhook_id == webhook_id)
    if item_id is not None:
        where.append(deliveries_t.c.item_id == item_id)
    return tx.execute(update(deliveries_t).where(*where).values(status=DeliveryStatus.CANCELLED)).rowcount
