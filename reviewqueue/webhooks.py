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
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from . import egress, events, keys, outbox, store
from .errors import NotFound, QueueNotFound, ValidationFailed, invalid
from .models import Queue, Webhook, WebhookDelivery
from .vocab import DeliveryStatus, EventKind

log = logging.getLogger("reviewqueue.webhooks")

REQUEST_TIMEOUT = 10.0
#: How long a worker holds a delivery it is sending.
LEASE = timedelta(seconds=REQUEST_TIMEOUT + 20)


#: How far a receiver should accept a signature's timestamp from its own clock.
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>``: the timestamp is signed
    with the body, so a captured request stops verifying after the tolerance."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, body: bytes, signature: str, *, tolerance: int = TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """For receivers: whether ``X-Reviewqueue-Signature`` signs the raw ``body`` with
    ``secret`` and its timestamp is within ``tolerance`` seconds of ``now``."""
    fields = dict(part.split("=", 1) for part in (signature or "").split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, timestamp=t).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


# --- configuration ----------------------------------------------------------------


def add(
    queue: str, url: str, *, secret: str | None = None, actor: str = "system", engine=None
) -> tuple[Webhook, str]:
    """Add a webhook; returns it and its signing secret (stored encrypted, shown once).
    The URL must reach a public address (see egress.py)."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    if len(url) > 2048:
        raise invalid("url", "is longer than 2,048 characters")
    egress.resolve(url, allow_private=settings.webhook_allow_private)
    secret = secret or secrets.token_hex(24)
    with store.write(engine) as tx:
        if tx.session.get(Queue, queue) is None:
            raise QueueNotFound(queue)
        hook = Webhook(queue=queue, url=url, secret=keys.seal(secret, settings))
        tx.session.add(hook)
        tx.session.flush()
        events.record(tx, EventKind.WEBHOOK_ADDED, actor, queue=queue, after={"id": hook.id, "url": url})
    return hook, secret


def remove(webhook_id: int, *, actor: str = "system", engine=None) -> Webhook:
    """Stop sending to a webhook: it is deactivated (kept for the record) and whatever
    is still waiting in its outbox is cancelled."""
    with store.write(engine) as tx:
        hook = tx.session.get(Webhook, webhook_id)
        if hook is None:
            raise NotFound(f"no webhook {webhook_id}")
        if hook.active:
            hook.active = False
            cancelled = tx.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == DeliveryStatus.PENDING
                )
                .values(status=DeliveryStatus.CANCELLED)
            ).rowcount
            events.record(
                tx,
                EventKind.WEBHOOK_REMOVED,
                actor,
                queue=hook.queue,
                after={"id": webhook_id, "url": hook.url, "cancelled_deliveries": cancelled},
            )
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


def _send(client: httpx.Client, row, settings) -> tuple[str | None, bool]:
    """POST one delivery to the address its URL resolves to now (checked, see egress.py).
    Returns ``(error, reached)``: the error (``None`` when delivered), and whether the
    receiver answered at all. The receiver's answer is never kept, only its status."""
    body = row.body.encode()
    try:
        host, port, addresses = egress.resolve(row.url, allow_private=settings.webhook_allow_private)
    except ValidationFailed as exc:
        return f"refused: {exc}", False
    url = httpx.URL(row.url)
    pinned = url.copy_with(host=addresses[0])
    headers = {
        "Content-Type": "application/json",
        "Host": url.netloc.decode(),
        "X-Reviewqueue-Signature": sign(keys.unseal(row.secret, settings), body),
        "X-Reviewqueue-Event-Id": row.event_id,
        "User-Agent": "reviewqueue-webhooks",
    }
    try:
        resp = client.post(pinned, content=body, headers=headers, extensions={"sni_hostname": host})
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: could not deliver to {host}:{port}", False
    return (None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"), True


def deliver_due(*, engine=None, client: httpx.Client | None = None, limit: int = 50) -> int:
    """Send what is due once; returns how many deliveries it leased.

    A receiver that cannot be reached is tried once per round: its other due deliveries
    wait for the same back-off, untried. Every outcome of the round is recorded in one
    transaction, so a dead receiver costs the reviewers two short writes a round."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    rows = outbox.lease_due(engine, limit, LEASE)
    if not rows:
        return 0
    own = client is None
    client = client or httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False)
    outcomes, unreachable = [], {}
    try:
        for row in rows:
            if row.webhook_id in unreachable:
                outcomes.append((row, unreachable[row.webhook_id], False))
                continue
            error, reached = _send(client, row, settings)
            if error:
                log.warning(
                    "webhook delivery %s (webhook %s) failed, attempt %s: %s",
                    row.id,
                    row.webhook_id,
                    row.attempts + 1,
                    error,
                )
                if not reached:
                    unreachable[row.webhook_id] = error
            outcomes.append((row, error, True))
    finally:
        if own:
            client.close()
        outbox.finish_many(engine, outcomes)
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
        with httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    full = deliver_due(engine=self.engine, client=client) >= 50
                except Exception:  # keep delivering whatever one round hit
                    log.exception("webhook delivery round failed")
                    full = False
                if not full:  # a full round means more is due now; otherwise rest
                    self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=REQUEST_TIMEOUT + 5)
