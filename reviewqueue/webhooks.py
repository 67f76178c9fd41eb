"""Webhooks: tell the posting app a verdict without polling.

When an item is decided (or a decision undone), the decision writes one delivery per
active webhook of its queue to the outbox (``outbox.py``) in its own transaction. A
worker here POSTs each body with ``X-Reviewqueue-Signature: sha256=<HMAC-SHA256 of the
body with the webhook's secret>``. Delivery is at least once: a failed POST is retried
with exponential backoff (capped at 10 minutes) for about a day, across restarts,
because the outbox is in the database. Each body carries an ``event_id`` so receivers
can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from . import outbox, store
from .errors import NotFound, QueueNotFound, invalid
from .models import Queue, Webhook, WebhookDelivery
from .vocab import DeliveryStatus

log = logging.getLogger("reviewqueue.webhooks")

REQUEST_TIMEOUT = 10.0
#: How long a worker holds a delivery it is sending.
LEASE = timedelta(seconds=REQUEST_TIMEOUT + 20)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """For receivers: check ``X-Reviewqueue-Signature`` against the raw body."""
    return hmac.compare_digest(sign(secret, body), signature or "")


# --- configuration ----------------------------------------------------------------


def add(queue: str, url: str, *, secret: str | None = None, engine=None) -> Webhook:
    if not url.startswith(("http://", "https://")):
        raise invalid("url", "must be an http:// or https:// URL")
    with store.write(engine) as tx:
        if tx.session.get(Queue, queue) is None:
            raise QueueNotFound(queue)
        hook = Webhook(queue=queue, url=url, secret=secret or secrets.token_hex(24))
        tx.session.add(hook)
    return hook


def remove(webhook_id: int, *, engine=None) -> Webhook:
    with store.write(engine) as tx:
        hook = tx.session.get(Webhook, webhook_id)
        if hook is None:
            raise NotFound(f"no webhook {webhook_id}")
        hook.active = False
    return hook


def all_webhooks(*, engine=None) -> list[Webhook]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(Webhook).order_by(Webhook.id)))


def status(*, engine=None) -> list[dict]:
    """Per webhook: deliveries by status, and the newest error."""
    with store.read(engine) as tx:
        session = tx.session
        counts = session.execute(
            select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count()).group_by(
                WebhookDelivery.webhook_id, WebhookDelivery.status
            )
        ).all()
        hooks = list(session.scalars(select(Webhook).order_by(Webhook.id)))
        errors = {}
        for hook in hooks:
            errors[hook.id] = session.scalars(
                select(WebhookDelivery.last_error)
                .where(
                    WebhookDelivery.webhook_id == hook.id,
                    WebhookDelivery.last_error.is_not(None),
                    WebhookDelivery.status != DeliveryStatus.DELIVERED,
                )
                .order_by(WebhookDelivery.id.desc())
                .limit(1)
            ).first()
    by_hook: dict[int, dict[str, int]] = {}
    for hook_id, st, n in counts:
        by_hook.setdefault(hook_id, {})[st] = n
    return [
        {
            "id": h.id,
            "queue": h.queue,
            "url": h.url,
            "active": h.active,
            **{
                str(st): by_hook.get(h.id, {}).get(st, 0)
                for st in (DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)
            },
            "last_error": errors[h.id],
        }
        for h in hooks
    ]


# --- delivery ---------------------------------------------------------------------


def deliver_due(*, engine=None, client: httpx.Client | None = None, limit: int = 50) -> int:
    """Send what is due once; returns how many were attempted."""
    rows = outbox.lease_due(engine, limit, LEASE)
    if not rows:
        return 0
    own = client is None
    client = client or httpx.Client(timeout=REQUEST_TIMEOUT)
    try:
        for row in rows:
            body = row.body.encode()
            try:
                resp = client.post(
                    row.url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Reviewqueue-Signature": sign(row.secret, body),
                        "X-Reviewqueue-Event-Id": row.event_id,
                        "User-Agent": "reviewqueue-webhooks",
                    },
                )
                error = (
                    None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}: {resp.text[:200]}"
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error:
                log.warning(
                    "webhook delivery %s to %s failed (attempt %s): %s",
                    row.id,
                    row.url,
                    row.attempts + 1,
                    error,
                )
            outbox.finish(engine, row, error)
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
