"""Webhooks: tell the posting app a verdict without polling.

When an item is decided (or a decision undone), one delivery row per active webhook of
its queue is written to an outbox *in the decision's own transaction*: a verdict never
commits without its notification, nor the other way round. A worker then POSTs each
body with ``X-Reviewqueue-Signature: sha256=<HMAC-SHA256 of the body with the webhook's
secret>``. Delivery is at least once: a failed POST is retried with exponential backoff
(capped at 10 minutes) for about a day, across restarts, because the outbox is in the
database. Each body carries an ``event_id`` so receivers can drop duplicates.

Workers lease deliveries before sending (the row's ``next_attempt_at`` moves past the
request timeout), so several workers, in one process or many, never send the same
delivery at the same time, and a crashed worker's deliveries are picked up again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import bindparam, func, select, update

from . import clock, review
from .db import Prepared, reading, transaction, writing
from .errors import NotFound, ValidationFailed
from .models import Queue, Webhook, WebhookDelivery

log = logging.getLogger("reviewqueue.webhooks")

MAX_ATTEMPTS = 150          # at the 10-minute cap, roughly a day of retries
REQUEST_TIMEOUT = 10.0
LEASE = timedelta(seconds=REQUEST_TIMEOUT + 20)
deliveries_t = WebhookDelivery.__table__
webhooks_t = Webhook.__table__


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """For receivers: check ``X-Reviewqueue-Signature`` against the raw body."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s ... capped at 10 minutes."""
    return timedelta(seconds=min(600, 2 ** max(0, attempts - 1)))


# --- configuration ----------------------------------------------------------------

def add(queue: str, url: str, *, secret: str | None = None, engine=None) -> Webhook:
    if not url.startswith(("http://", "https://")):
        raise ValidationFailed.of([{"loc": ["url"], "msg": "must be an http:// or https:// URL", "type": "value_error"}])
    with transaction(engine) as session:
        if session.get(Queue, queue) is None:
            raise NotFound(f"queue {queue!r} does not exist")
        hook = Webhook(queue=queue, url=url, secret=secret or secrets.token_hex(24))
        session.add(hook)
    return hook


def remove(webhook_id: int, *, engine=None) -> Webhook:
    with transaction(engine) as session:
        hook = session.get(Webhook, webhook_id)
        if hook is None:
            raise NotFound(f"no webhook {webhook_id}")
        hook.active = False
    return hook


def all_webhooks(*, engine=None) -> list[Webhook]:
    with reading(engine) as session:
        return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def status(*, engine=None) -> list[dict]:
    """Per webhook: deliveries by status, and the newest error."""
    with reading(engine) as session:
        counts = session.execute(
            select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
            .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
        ).all()
        hooks = list(session.scalars(select(Webhook).order_by(Webhook.id)))
        errors = {}
        for hook in hooks:
            errors[hook.id] = session.scalars(
                select(WebhookDelivery.last_error)
                .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.last_error.is_not(None),
                       WebhookDelivery.status != "delivered")
                .order_by(WebhookDelivery.id.desc()).limit(1)
            ).first()
    by_hook: dict[int, dict[str, int]] = {}
    for hook_id, st, n in counts:
        by_hook.setdefault(hook_id, {})[st] = n
    return [{"id": h.id, "queue": h.queue, "url": h.url, "active": h.active,
             "pending": by_hook.get(h.id, {}).get("pending", 0),
             "delivered": by_hook.get(h.id, {}).get("delivered", 0),
             "failed": by_hook.get(h.id, {}).get("failed", 0), "last_error": errors[h.id]} for h in hooks]


# --- the outbox -------------------------------------------------------------------

# Run inside every decision's transaction (the SQLite write lock): on the driver's cursor.
_ACTIVE_HOOKS = Prepared(
    select(webhooks_t.c.id).where(webhooks_t.c.queue == bindparam("b_queue"), webhooks_t.c.active.is_(True))
)


def _enqueue(conn, item, rv, kind: str) -> None:
    hook_ids = [row.id for row in _ACTIVE_HOOKS.rows(conn, {"b_queue": item.queue})]
    if not hook_ids:
        return
    now = clock.now()
    event_id = str(uuid.uuid4())
    body = json.dumps({
        "event_id": event_id, "type": kind, "item_id": item.id, "external_id": item.external_id,
        "queue": item.queue, "verdict": rv.verdict,
        "final_output": rv.final_output, "final_label": rv.final_label, "reason": rv.reason,
        "comment": rv.comment, "reviewer": rv.reviewer, "decided_at": clock.iso(rv.created_at),
        "sent_for": clock.iso(now),
    }, ensure_ascii=False, sort_keys=True)
    conn.execute(deliveries_t.insert(), [
        {"event_id": event_id, "webhook_id": h, "kind": kind, "body": body, "status": "pending", "attempts": 0,
         "next_attempt_at": now, "created_at": now} for h in hook_ids
    ])


review.decision_listeners.append(_enqueue)


# --- delivery ---------------------------------------------------------------------

def _lease_due(engine, limit: int) -> list:
    with writing(engine) as conn:
        now = clock.now()
        rows = conn.execute(
            select(deliveries_t.c.id, deliveries_t.c.body, deliveries_t.c.attempts, deliveries_t.c.event_id,
                   webhooks_t.c.url, webhooks_t.c.secret)
            .join(webhooks_t, webhooks_t.c.id == deliveries_t.c.webhook_id)
            .where(deliveries_t.c.status == "pending", deliveries_t.c.next_attempt_at <= now)
            .order_by(deliveries_t.c.next_attempt_at).limit(limit)
            .with_for_update(skip_locked=True, of=deliveries_t)
        ).all()
        if rows:
            conn.execute(
                update(deliveries_t).where(deliveries_t.c.id.in_([r.id for r in rows]))
                .values(next_attempt_at=now + LEASE)
            )
        return rows


def _finish(engine, row, error: str | None) -> None:
    with writing(engine) as conn:
        now = clock.now()
        attempts = row.attempts + 1
        if error is None:
            values = {"status": "delivered", "attempts": attempts, "delivered_at": now, "last_error": None}
        elif attempts >= MAX_ATTEMPTS:
            values = {"status": "failed", "attempts": attempts, "last_error": error[:1000]}
        else:
            values = {"attempts": attempts, "last_error": error[:1000], "next_attempt_at": now + backoff(attempts)}
        conn.execute(update(deliveries_t).where(deliveries_t.c.id == row.id).values(**values))


def deliver_due(*, engine=None, client: httpx.Client | None = None, limit: int = 50) -> int:
    """Send what is due once; returns how many were attempted."""
    rows = _lease_due(engine, limit)
    if not rows:
        return 0
    own = client is None
    client = client or httpx.Client(timeout=REQUEST_TIMEOUT)
    try:
        for row in rows:
            body = row.body.encode()
            try:
                resp = client.post(row.url, content=body, headers={
                    "Content-Type": "application/json",
                    "X-Reviewqueue-Signature": sign(row.secret, body),
                    "X-Reviewqueue-Event-Id": row.event_id,
                    "User-Agent": "reviewqueue-webhooks",
                })
                error = None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error:
                log.warning("webhook delivery %s to %s failed (attempt %s): %s", row.id, row.url, row.attempts + 1, error)
            _finish(engine, row, error)
    finally:
        if own:
            client.close()
    return len(rows)


class Worker:
    """Delivers due webhooks in a background thread until stopped."""

    def __init__(self, engine=None, interval: float = 1.0):
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run, name="reviewqueue-webhooks", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            while not self._stop.is_set():
                try:
                    busy = deliver_due(engine=self.engine, client=client)
                except Exception:  # keep delivering whatever one round hit
                    log.exception("webhook delivery round failed")
                    busy = 0
                if not busy:
                    self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=REQUEST_TIMEOUT + 5)
