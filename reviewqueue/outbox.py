"""The webhook outbox: what must be POSTed, written in the same transaction as the change.

A decision (or an undo) calls :func:`enqueue` inside its own unit of work, so a verdict
never commits without its notification, nor the other way round. Delivery
(``webhooks.py``) leases due rows (:func:`lease_due`), sends outside any transaction,
and records the outcome (:func:`finish`). Rows are kept after delivery: they are the
record of what was sent.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update

from . import clock, store
from .models import Webhook, WebhookDelivery
from .store import queries
from .vocab import DeliveryStatus, EventKind

#: Attempts before a delivery is given up: at the 10-minute cap, roughly a day.
MAX_ATTEMPTS = 150
deliveries_t = WebhookDelivery.__table__
webhooks_t = Webhook.__table__


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s ... capped at 10 minutes."""
    return timedelta(seconds=min(600, 2 ** max(0, attempts - 1)))


def body(item, review, kind: EventKind, now: datetime) -> tuple[str, str]:
    """``(event_id, the JSON body)`` of a notification about ``review`` of ``item``."""
    event_id = str(uuid.uuid4())
    return event_id, json.dumps(
        {
            "event_id": event_id,
            "type": kind,
            "item_id": item.id,
            "external_id": item.external_id,
            "queue": item.queue,
            "verdict": review.verdict,
            "final_output": review.final_output,
            "final_label": review.final_label,
            "reason": review.reason,
            "comment": review.comment,
            "reviewer": review.reviewer,
            "decided_at": clock.iso(review.created_at),
            "sent_for": clock.iso(now),
        },
        ensure_ascii=False,
        sort_keys=True,
    )


def enqueue(tx: store.Tx, item, review, kind: EventKind, *, now: datetime) -> None:
    """One delivery per active webhook of the item's queue, in ``tx``."""
    hooks = queries.ACTIVE_WEBHOOKS.rows(tx, {"queue": item.queue, "active": True})
    if not hooks:
        return
    event_id, text = body(item, review, kind, now)
    for hook in hooks:
        queries.INSERT_DELIVERY.run(
            tx,
            {
                "event_id": event_id,
                "webhook_id": hook.id,
                "item_id": item.id,
                "kind": kind,
                "body": text,
                "now": now,
            },
        )


def lease_due(engine, limit: int, lease: timedelta) -> list:
    """Up to ``limit`` due deliveries with their webhook's URL and secret, leased for
    ``lease``: their next attempt moves past it, so no other worker sends them meanwhile,
    and a crashed worker's deliveries come due again."""
    with store.write(engine) as tx:
        now = clock.now()
        rows = tx.execute(
            select(
                deliveries_t.c.id,
                deliveries_t.c.body,
                deliveries_t.c.attempts,
                deliveries_t.c.event_id,
                deliveries_t.c.webhook_id,
                webhooks_t.c.url,
                webhooks_t.c.secret,
            )
            .join(webhooks_t, webhooks_t.c.id == deliveries_t.c.webhook_id)
            .where(deliveries_t.c.status == DeliveryStatus.PENDING, deliveries_t.c.next_attempt_at <= now)
            .order_by(deliveries_t.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=deliveries_t)
        ).all()
        if rows:
            tx.execute(
                update(deliveries_t)
                .where(deliveries_t.c.id.in_([r.id for r in rows]))
                .values(next_attempt_at=now + lease)
            )
        return rows


def finish_many(engine, outcomes: list[tuple]) -> None:
    """Record a round's outcomes, ``(row, error, tried)`` each, in one transaction: delivered,
    or the error and when to try again (a delivery not tried waits as its webhook's failed
    one does, without counting an attempt). A delivery cancelled meanwhile (its webhook
    removed) stays cancelled."""
    if not outcomes:
        return
    with store.write(engine) as tx:
        now = clock.now()
        for row, error, tried in outcomes:
            attempts = row.attempts + 1 if tried else row.attempts
            if error is None:
                values = {
                    "status": DeliveryStatus.DELIVERED,
                    "attempts": attempts,
                    "delivered_at": now,
                    "last_error": None,
                }
            elif tried and attempts >= MAX_ATTEMPTS:
                values = {"status": DeliveryStatus.FAILED, "attempts": attempts, "last_error": error[:1000]}
            else:
                values = {
                    "attempts": attempts,
                    "last_error": error[:1000],
                    "next_attempt_at": now + backoff(max(attempts, 1)),
                }
            tx.execute(
                update(deliveries_t)
                .where(deliveries_t.c.id == row.id, deliveries_t.c.status == DeliveryStatus.PENDING)
                .values(**values)
            )
