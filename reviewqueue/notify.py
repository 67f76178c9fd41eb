"""Alerts that reach people, self-hosted: Slack-compatible incoming webhooks (Slack,
Mattermost, Microsoft Teams and alike take ``{"text": ...}``) and e-mail over SMTP.

Rules are per queue (the queue's ``alerts`` setting; a rule left out is not checked):

- ``oldest_waiting_seconds``: the oldest waiting item is older than this;
- ``due_soon``: at least this many waiting items are due within the queue's
  ``warn_seconds`` (300 s when unset);
- ``fallbacks_per_hour``: at least this many deadlines passed with no human answer in
  the last hour;
- ``target_error``: the quality advisor's upper bound of the auto-accepted error (95%)
  is above this share.

A background job (one leader, ``background.py``) checks them every
:data:`CHECK_SECONDS`. A rule that starts firing sends one message to every active
channel of its queue, naming the queue, the figure, the threshold and a link to the
page; nothing more is sent while it keeps firing, and after it clears a new message
about it waits out ``REVIEWQUEUE_ALERT_COOLDOWN_SECONDS`` from the last. Once a day
after ``REVIEWQUEUE_DIGEST_HOUR`` (UTC) a digest of every queue goes to the channels
that take it. Everything is recorded as events: ``alert.raised``, ``alert.cleared``,
``alert.sent`` (with the channels reached and any failure).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

import httpx
from sqlalchemy import select

from . import clock, egress, events, jobs, keys, metrics, queues, store
from .errors import NotFound, QueueNotFound, invalid
from .models import AlertState, NotifyChannel, Queue
from .vocab import EventKind

log = logging.getLogger(__name__)

#: Seconds between checks of the rules.
CHECK_SECONDS = 30.0
KINDS = ("slack", "email")
RULES = ("oldest_waiting_seconds", "due_soon", "fallbacks_per_hour", "target_error")
_PAGES = {"oldest_waiting_seconds": "dashboard", "due_soon": "review", "fallbacks_per_hour": "dashboard"}


# --- channels ------------------------------------------------------------------------


def add(
    kind: str,
    target: str,
    *,
    queues_: list[str] | None = None,
    digest: bool = True,
    actor="system",
    engine=None,
):
    """Add a channel: ``slack`` with an incoming-webhook URL (checked like webhook
    targets, egress.py; stored encrypted: the URL is its credential) or ``email`` with
    an address."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    if kind not in KINDS:
        raise invalid("kind", f"must be one of {', '.join(KINDS)}")
    if kind == "slack":
        if len(target) > 1024:
            raise invalid("url", "is longer than 1,024 characters")
        egress.resolve(target, allow_private=settings.webhook_allow_private)
        stored = keys.seal(target, settings)
    else:
        if not _looks_like_address(target):
            raise invalid("address", f"{target!r} is not an e-mail address (name@example.org)")
        if not settings.smtp_host:
            raise invalid(
                "address", "set REVIEWQUEUE_SMTP_HOST (and _PORT, _USER, _PASSWORD, _FROM) to send e-mail"
            )
        stored = target
    with store.write(engine) as tx:
        for name in queues_ or []:
            if tx.session.get(Queue, name) is None:
                raise QueueNotFound(name)
        channel = NotifyChannel(kind=kind, target=stored, queues=list(queues_ or []), digest=digest)
        tx.session.add(channel)
        tx.session.flush()
        events.record(
            tx,
            EventKind.NOTIFY_ADDED,
            actor,
            after={
                "id": channel.id,
                "kind": kind,
                "to": describe_target(kind, target),
                "queues": channel.queues,
            },
        )
        return channel


def _looks_like_address(text: str) -> bool:
    name, at, domain = text.rpartition("@")
    return bool(at and name and "." in domain and not any(c in text for c in " \r\n<>,;"))


def describe_target(kind: str, target: str) -> str:
    """What a channel is, without its secret: an address, or a webhook's host."""
    if kind == "email":
        return target
    return httpx.URL(target).host or "webhook"


def channels(*, engine=None) -> list[dict]:
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    with store.read(engine) as tx:
        rows = list(tx.session.scalars(select(NotifyChannel).order_by(NotifyChannel.id)))
    return [
        {
            "id": c.id,
            "kind": c.kind,
            "to": describe_target(c.kind, _target(c, settings)),
            "queues": c.queues,
            "digest": c.digest,
            "active": c.active,
            "last_error": c.last_error,
        }
        for c in rows
    ]


def remove(channel_id: int, *, actor="system", engine=None) -> None:
    with store.write(engine) as tx:
        channel = tx.session.get(NotifyChannel, channel_id)
        if channel is None or not channel.active:
            raise NotFound(f"no active notification channel {channel_id} (reviewqueue notify list)")
        channel.active = False
        events.record(tx, EventKind.NOTIFY_REMOVED, actor, after={"id": channel_id, "kind": channel.kind})


def _target(channel: NotifyChannel, settings) -> str:
    return keys.unseal(channel.target, settings) if channel.kind == "slack" else channel.target


# --- sending -------------------------------------------------------------------------


def _send(channel: NotifyChannel, subject: str, text: str, settings) -> str | None:
    """Send one message; the error, or ``None``."""
    try:
        if channel.kind == "slack":
            url = _target(channel, settings)
            host, _, addresses = egress.resolve(url, allow_private=settings.webhook_allow_private)
            pinned = httpx.URL(url).copy_with(host=addresses[0])
            with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
                resp = client.post(
                    pinned,
                    json={"text": f"*{subject}*\n{text}"},
                    headers={"Host": httpx.URL(url).netloc.decode(), "User-Agent": "reviewqueue-notify"},
                    extensions={"sni_hostname": host},
                )
            return None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, settings.smtp_from, channel.target
        message.set_content(text)
        context = ssl.create_default_context()
        if settings.smtp_port == 465:
            smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=30, context=context)
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
        with smtp:
            if settings.smtp_port != 465 and settings.smtp_starttls:
                smtp.starttls(context=context)
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(message)
        return None
    except Exception as exc:  # a channel's trouble is recorded, never raised into the job
        return f"{type(exc).__name__}: {exc}"[:500]


def deliver(subject: str, text: str, *, queue: str | None, digest: bool = False, engine=None) -> dict:
    """Send a message to every active channel of ``queue`` (all queues' channels for
    ``None``; only those taking the digest when ``digest``); ``{channel id: error}``."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    with store.read(engine) as tx:
        targets = [
            c
            for c in tx.session.scalars(select(NotifyChannel).where(NotifyChannel.active.is_(True)))
            if (queue is None or not c.queues or queue in c.queues) and (c.digest or not digest)
        ]
    outcome = {c.id: _send(c, subject, text, settings) for c in targets}
    with store.write(engine) as tx:
        for channel_id, error in outcome.items():
            row = tx.session.get(NotifyChannel, channel_id)
            if row is not None:
                row.last_error = error
        events.record(
            tx,
            EventKind.ALERT_SENT,
            "system",
            queue=queue,
            after={"subject": subject, "sent": [i for i, e in outcome.items() if e is None]}
            | ({"failed": {str(i): e for i, e in outcome.items() if e}} if any(outcome.values()) else {}),
        )
    for channel_id, error in outcome.items():
        if error:
            log.warning("alert %r to channel %s failed: %s", subject, channel_id, error)
    return outcome


# --- rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    queue: str
    rule: str
    value: float
    threshold: float

    @property
    def firing(self) -> bool:
        if self.rule in ("due_soon", "fallbacks_per_hour"):
            return self.value >= self.threshold
        return self.value > self.threshold

    def sentence(self) -> str:
        v, t = self.value, self.threshold
        if self.rule == "oldest_waiting_seconds":
            return f"the oldest waiting item is {clock.duration(v)} old (alert above {clock.duration(t)})"
        if self.rule == "due_soon":
            return f"{v:.0f} waiting items are due soon (alert at {t:.0f})"
        if self.rule == "fallbacks_per_hour":
            return f"{v:.0f} deadlines passed with no human answer in the last hour (alert at {t:.0f})"
        return f"unreviewed outputs may be wrong up to {v:.1%} (upper bound; target {t:.1%})"


def readings(*, engine=None) -> list[Reading]:
    """Every rule of every queue, with the figure it is held against now."""
    from . import deadlines, quality

    engine = engine or store.get_engine()
    now = clock.now()
    with store.read(engine) as tx:
        rules = {q.name: (q.alerts or {}, q.warn_seconds) for q in tx.session.scalars(select(Queue))}
    wanted = {name for name, (alerts, _) in rules.items() if alerts}
    if not wanted:
        return []
    figures = queues.figures(engine=engine)
    hour = metrics.deadline_fallbacks(since=now - timedelta(hours=1), engine=engine)
    errors = (
        quality.auto_accepted_error_gauge(engine=engine)
        if any("target_error" in rules[q][0] for q in wanted)
        else {}
    )
    out = []
    for name in sorted(wanted):
        alerts, warn = rules[name]
        for rule in RULES:
            threshold = alerts.get(rule)
            if threshold is None:
                continue
            if rule == "oldest_waiting_seconds":
                oldest = figures.oldest.get(name)
                value = (now - oldest).total_seconds() if oldest else 0.0
            elif rule == "due_soon":
                value = deadlines.due_soon(name, warn or metrics.DUE_SOON_SECONDS, engine=engine)
            elif rule == "fallbacks_per_hour":
                value = sum(n for (q, action), n in hour.items() if q == name and action != "keep")
            else:
                value = errors.get(name, (None, 0.0))[1] or 0.0
            out.append(Reading(name, rule, float(value), float(threshold)))
    return out


def check(*, engine=None) -> list[Reading]:
    """One round: raise, keep or clear each rule, sending what is due; the readings
    whose message went out."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    cooldown = timedelta(seconds=settings.alert_cooldown_seconds)
    sent = []
    for reading in readings(engine=engine):
        with store.write(engine) as tx:
            now = clock.now()
            state = tx.session.get(AlertState, (reading.queue, reading.rule)) or AlertState(
                queue=reading.queue, rule=reading.rule
            )
            tx.session.add(state)
            state.value, state.threshold = reading.value, reading.threshold
            was = state.active
            if reading.firing == was:
                continue
            state.active = reading.firing
            due = reading.firing and (
                state.last_sent_at is None or now - clock.parse(state.last_sent_at) >= cooldown
            )
            if reading.firing:
                state.raised_at = now
                if due:
                    state.last_sent_at = now
            else:
                state.cleared_at = now
            events.record(
                tx,
                EventKind.ALERT_RAISED if reading.firing else EventKind.ALERT_CLEARED,
                "system",
                queue=reading.queue,
                after={"rule": reading.rule, "value": reading.value, "threshold": reading.threshold}
                | ({"message": "held back: cool-down"} if reading.firing and not due else {}),
            )
        if reading.firing and due:
            deliver(
                f"reviewqueue: {reading.queue}: {reading.sentence().split(' (')[0]}",
                f"Queue {reading.queue}: {reading.sentence()}.\n{_link(settings, reading)}",
                queue=reading.queue,
                engine=engine,
            )
            sent.append(reading)
    return sent


def _link(settings, reading: Reading) -> str:
    page = _PAGES.get(reading.rule, "quality")
    return f"{settings.public_url.rstrip('/')}/{page}?queue={reading.queue}"


# --- the daily digest ---------------------------------------------------------------


def digest_text(*, engine=None) -> str:
    """Every queue in a few lines: waiting, oldest, decided and deadline fallbacks in the
    last 24 hours, and the alerts firing now."""
    engine = engine or store.get_engine()
    now = clock.now()
    settings = store.settings_of(engine)
    rows = queues.overview(engine=engine)
    day = metrics.deadline_fallbacks(since=now - timedelta(days=1), engine=engine)
    decided = metrics.decided_since(now - timedelta(days=1), engine=engine)
    with store.read(engine) as tx:
        firing = [
            (s.queue, s.rule, s.value, s.threshold)
            for s in tx.session.scalars(select(AlertState))
            if s.active
        ]
    lines = [f"reviewqueue daily digest, {now:%Y-%m-%d %H:%M} UTC"]
    for q in rows:
        waiting = sum(n for s, n in q.counts.items() if s in ("pending", "in_review", "disputed"))
        oldest = clock.duration((now - q.oldest_pending_at).total_seconds()) if q.oldest_pending_at else "-"
        fallbacks = sum(n for (name, action), n in day.items() if name == q.name and action != "keep")
        lines.append(
            f"- {q.name}: {waiting} waiting (oldest {oldest}), {decided.get(q.name, 0)} decided in 24 h, "
            f"{fallbacks} deadline fallbacks in 24 h"
        )
    if firing:
        lines.append("Firing now:")
        lines += [f"- {q}: {Reading(q, r, v or 0.0, t or 0.0).sentence()}" for q, r, v, t in firing]
    lines.append(f"{settings.public_url.rstrip('/')}/dashboard")
    return "\n".join(lines)


def digest_due(*, engine=None) -> bool:
    engine = engine or store.get_engine()
    hour = store.settings_of(engine).digest_hour
    now = clock.now()
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if now < today:
        return False
    with store.read(engine) as tx:
        state = tx.session.get(AlertState, ("", "digest"))
    return state is None or state.last_sent_at is None or clock.parse(state.last_sent_at) < today


def send_digest(*, engine=None) -> dict:
    engine = engine or store.get_engine()
    with store.write(engine) as tx:
        state = tx.session.get(AlertState, ("", "digest")) or AlertState(queue="", rule="digest")
        state.last_sent_at = clock.now()
        tx.session.add(state)
    return deliver(
        "reviewqueue daily digest", digest_text(engine=engine), queue=None, digest=True, engine=engine
    )


def run_round(engine) -> bool:
    check(engine=engine)
    if digest_due(engine=engine):
        send_digest(engine=engine)
    return False


def alert_job() -> jobs.Job:
    return jobs.Job("alerts", run_round, interval=CHECK_SECONDS, led=True)
