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
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from . import clock, egress, events, jobs, keys, outbox, store
from .errors import NotFound, QueueNotFound, ValidationFailed, invalid
from .models import Queue, Webhook, WebhookDelivery
from .vocab import DeliveryStatus, EventKind

log = logging.getLogger("reviewqueue.webhooks")

#: Seconds each of connecting, sending and reading a delivery may take (the default of
#: ``REVIEWQUEUE_WEBHOOK_TIMEOUT_SECONDS``).
REQUEST_TIMEOUT = 10.0


def lease_for(settings) -> timedelta:
    """How long a worker holds a delivery it is sending: connecting, sending and reading
    each have the timeout, and the outcome is recorded well within the rest."""
    return timedelta(seconds=4 * settings.webhook_timeout_seconds + 10)


#: The lease with the default timeout.
LEASE = timedelta(seconds=4 * REQUEST_TIMEOUT + 10)


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
    """Stop sending to a webhook: it is deactivated (kept for the record), whatever is
    still waiting in its outbox is cancelled, and this returns once no POST to it is in
    flight in any process: after it, the webhook receives nothing more."""
    engine = engine or store.get_engine()
    with store.write(engine) as tx:
        hook = tx.session.get(Webhook, webhook_id)
        if hook is None:
            raise NotFound(f"no webhook {webhook_id}")
        if hook.active:
            hook.active = False
            tx.session.flush()
            cancelled = outbox.cancel(tx, webhook_id=webhook_id)
            events.record(
                tx,
                EventKind.WEBHOOK_REMOVED,
                actor,
                queue=hook.queue,
                after={"id": webhook_id, "url": hook.url, "cancelled_deliveries": cancelled},
            )
    lease = lease_for(store.settings_of(engine))
    if not outbox.wait_sent(engine, webhook_id=webhook_id, timeout=lease.total_seconds()):
        log.warning("webhook %s: a delivery was still in flight when its lease ran out", webhook_id)
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


#: Deliveries sent by this process, by outcome (the per-process figures of /metrics).
SENT = {"delivered": 0, "failed": 0, "unreachable": 0}


def deliver_due(*, engine=None, client: httpx.Client | None = None, limit: int = 50) -> int:
    """Send what is due, one delivery at a time, until nothing more is due or ``limit``
    deliveries were tried; returns how many were tried.

    Each delivery is taken on its own (``outbox.claim`` re-checks its webhook and item in
    that statement), POSTed, and its outcome recorded before the next is taken: nothing
    this process holds can outlast its lease, and a webhook removed or an item erased
    is never sent to after the change commits. A receiver that cannot be reached is
    tried once per round: its other due deliveries wait for its back-off, untried."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    own = client is None
    lease = lease_for(settings)
    client = client or httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
    tried, unreachable, passed_over = 0, set(), set()
    try:
        while tried < limit:
            progress = False
            for delivery_id, webhook_id in outbox.due(engine, limit):
                if tried >= limit:
                    break
                if delivery_id in passed_over:
                    continue
                if webhook_id in unreachable:  # untried: it waits for its receiver's back-off
                    passed_over.add(delivery_id)
                    continue
                row = outbox.claim(engine, delivery_id, lease)
                if row is None:
                    continue
                error, reached = _send(client, row, settings)
                outbox.finish(engine, row, error)
                tried += 1
                progress = True
                if error is None:
                    SENT["delivered"] += 1
                    continue
                SENT["failed" if reached else "unreachable"] += 1
                log.warning(
                    "webhook delivery %s (webhook %s) failed, attempt %s: %s",
                    row.id,
                    row.webhook_id,
                    row.attempts + 1,
                    error,
                )
                if not reached:
                    unreachable.add(row.webhook_id)
            if not progress:
                break
    finally:
        if own:
            client.close()
        if passed_over:
            outbox.postpone(engine, sorted(passed_over), clock.now() + outbox.backoff(1))
    return tried


def worker_job(*, interval: float = 1.0) -> jobs.Job:
    """Webhook delivery as a background job: every process runs it, the work splits by
    row (``outbox.claim``)."""
    clients: dict = {}

    def run(engine) -> bool:
        engine = engine or store.get_engine()
        timeout = store.settings_of(engine).webhook_timeout_seconds
        client = clients.get(timeout)
        if client is None:
            client = clients[timeout] = httpx.Client(timeout=timeout, follow_redirects=False)
        return deliver_due(engine=engine, client=client) >= 50

    return jobs.Job("webhooks", run, interval, led=False)


class Worker:
    """Delivers due webhooks in a background thread until stopped."""

    def __init__(self, engine=None, interval: float = 1.0):
        self._runner = jobs.Runner([worker_job(interval=interval)], engine)

    def start(self) -> Worker:
        self._runner.start()
        return self

    def stop(self) -> None:
        self._runner.stop(timeout=REQUEST_TIMEOUT + 5)
