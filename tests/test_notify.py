"""Alerts that reach people (notify.py), against a local HTTP receiver (a Slack-compatible
incoming webhook) and a local SMTP server (aiosmtpd): one message per condition, none
repeated within the cool-down, each rule kind, the digest's content, and every message
recorded as an event."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from reviewqueue import deadlines, ingest, notify, queues, review, store
from reviewqueue.cli import app
from reviewqueue.errors import ValidationFailed
from reviewqueue.settings import get_settings

from .conftest import LocalServer, free_port, item, quiet_handler


class _Hook(quiet_handler()):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.owner.received.append(json.loads(body))
        self.send_response(self.server.owner.status)
        self.end_headers()


class SlackLike(LocalServer):
    def __init__(self, port, status=200):
        self.received, self.status = [], status
        super().__init__(_Hook, port)


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("REVIEWQUEUE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("REVIEWQUEUE_SMTP_PORT", str(port))
    monkeypatch.setenv("REVIEWQUEUE_SMTP_STARTTLS", "0")
    get_settings.cache_clear()
    yield inbox
    controller.stop()


@pytest.fixture(autouse=True)
def _local(monkeypatch):
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("REVIEWQUEUE_PUBLIC_URL", "https://review.example.org")
    get_settings.cache_clear()


def _engine(db_url):
    # A fresh engine: it carries the settings the fixtures just set.
    get_settings.cache_clear()
    store.dispose_engines()
    return store.get_engine(db_url)


def test_oldest_waiting_alert_once_per_condition_and_cool_down(db_url, smtp, fake_clock):
    engine = _engine(db_url)
    queues.create("support", {"audit_rate": 0.0, "alerts": {"oldest_waiting_seconds": 600}}, engine=engine)
    port = free_port()
    with SlackLike(port) as hook:
        notify.add("slack", f"http://127.0.0.1:{port}/hooks/abc", engine=engine)
        notify.add("email", "oncall@example.org", engine=engine)
        ingest.submit(item(1), engine=engine)
        assert notify.check(engine=engine) == []
        fake_clock.advance(601)
        [reading] = notify.check(engine=engine)
        assert reading.rule == "oldest_waiting_seconds" and reading.firing
        assert notify.check(engine=engine) == []  # still firing: no second message
        [sent] = hook.received
        assert (
            "support" in sent["text"]
            and "10 min 01 s old" in sent["text"]
            and "alert above 10 min 00 s" in sent["text"]
        )
        assert "https://review.example.org/dashboard?queue=support" in sent["text"]
        [(to, mail)] = smtp.messages
        assert (
            to == ["oncall@example.org"] and "Subject: reviewqueue: support: the oldest waiting item" in mail
        )
        # It clears (decided), fires again within the cool-down: recorded, not sent.
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
        notify.check(engine=engine)
        ingest.submit(item(2), engine=engine)
        fake_clock.advance(601)
        assert notify.check(engine=engine) == []
        assert len(hook.received) == 1
        kinds = [e.kind for e in _alert_events(engine)]
        assert kinds == ["alert.raised", "alert.sent", "alert.cleared", "alert.raised"]
        assert _alert_events(engine)[-1].after["message"] == "held back: cool-down"
        # After the cool-down a new condition is sent again.
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
        notify.check(engine=engine)
        fake_clock.advance(3600)
        ingest.submit(item(3), engine=engine)
        fake_clock.advance(601)
        assert len(notify.check(engine=engine)) == 1 and len(hook.received) == 2


def _alert_events(engine):
    from sqlalchemy import select

    from reviewqueue.models import Event

    with store.read(engine) as tx:
        return [
            e for e in tx.session.scalars(select(Event).order_by(Event.id)) if e.kind.startswith("alert.")
        ]


def test_due_soon_and_fallback_rules(db_url, fake_clock):
    engine = _engine(db_url)
    queues.create(
        "refunds",
        {
            "audit_rate": 0.0,
            "deadline_seconds": 120,
            "warn_seconds": 60,
            "on_deadline": "reject",
            "reject_reasons": ["late"],
            "deadline_reason": "late",
            "alerts": {"due_soon": 3, "fallbacks_per_hour": 3},
        },
        engine=engine,
    )
    port = free_port()
    with SlackLike(port) as hook:
        notify.add("slack", f"http://127.0.0.1:{port}/x", queues_=["refunds"], engine=engine)
        ingest.submit_many([item(i, queue="refunds") for i in range(3)], engine=engine)
        assert notify.check(engine=engine) == []
        fake_clock.advance(70)
        [due] = notify.check(engine=engine)
        assert due.rule == "due_soon" and due.value == 3
        fake_clock.advance(60)
        deadlines.run_round(engine)
        fired = {r.rule for r in notify.check(engine=engine)}
        assert fired == {"fallbacks_per_hour"}
    texts = [m["text"] for m in hook.received]
    assert "3 waiting items are due soon (alert at 3)" in texts[0]
    assert "3 deadlines passed with no human answer in the last hour" in texts[1]


def test_channels_only_get_their_queues_and_bad_targets_are_refused(db_url, monkeypatch, fake_clock):
    engine = _engine(db_url)
    queues.create("a", {"audit_rate": 0.0, "alerts": {"oldest_waiting_seconds": 1}}, engine=engine)
    queues.create("b", engine=engine)
    port = free_port()
    with SlackLike(port) as hook:
        notify.add("slack", f"http://127.0.0.1:{port}/x", queues_=["b"], engine=engine)
        ingest.submit(item(1, queue="a"), engine=engine)
        fake_clock.advance(5)
        assert len(notify.check(engine=engine)) == 1  # raised, and sent to nobody: no channel of a's
    assert hook.received == []
    with pytest.raises(ValidationFailed, match="SMTP_HOST"):
        notify.add("email", "x@example.org", engine=engine)
    with pytest.raises(ValidationFailed, match="e-mail address"):
        notify.add("email", "not an address", engine=engine)
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "0")
    engine = _engine(db_url)
    with pytest.raises(ValidationFailed, match="internal address"):
        notify.add("slack", "http://127.0.0.1:9/x", engine=engine)
    with pytest.raises(ValidationFailed, match="http"):
        notify.add("slack", "ftp://example.org/x", engine=engine)


def test_a_failing_channel_is_recorded_not_raised(db_url, fake_clock):
    engine = _engine(db_url)
    queues.create("support", {"audit_rate": 0.0, "alerts": {"oldest_waiting_seconds": 1}}, engine=engine)
    port = free_port()
    with SlackLike(port, status=500):
        channel = notify.add("slack", f"http://127.0.0.1:{port}/x", engine=engine)
        ingest.submit(item(1), engine=engine)
        fake_clock.advance(5)
        notify.check(engine=engine)
    [row] = notify.channels(engine=engine)
    assert row["id"] == channel.id and row["last_error"] == "HTTP 500" and row["to"] == "127.0.0.1"
    sent = [e for e in _alert_events(engine) if e.kind == "alert.sent"]
    assert sent[-1].after["failed"] == {str(channel.id): "HTTP 500"}


def test_daily_digest(db_url, smtp, fake_clock, monkeypatch):
    monkeypatch.setenv("REVIEWQUEUE_DIGEST_HOUR", "8")
    engine = _engine(db_url)
    queues.create("support", {"audit_rate": 0.0}, engine=engine)
    notify.add("email", "lead@example.org", engine=engine)
    notify.add("email", "quiet@example.org", digest=False, engine=engine)
    ingest.submit_many([item(i) for i in range(3)], engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    from reviewqueue import clock

    now = clock.now()
    fake_clock.set(now.replace(hour=7, minute=0) + timedelta(days=1))
    assert not notify.digest_due(engine=engine)  # not before the hour
    fake_clock.set(now.replace(hour=8, minute=30) + timedelta(days=1))
    assert notify.digest_due(engine=engine)
    notify.run_round(engine)
    assert not notify.digest_due(engine=engine)  # once a day
    notify.run_round(engine)
    [(to, raw)] = smtp.messages
    message = email.message_from_string(raw, policy=email.policy.default)
    mail = message.get_content()
    assert to == ["lead@example.org"] and message["Subject"] == "reviewqueue daily digest"
    assert (
        "support: 2 waiting" in mail and "1 decided in 24 h" in mail and "deadline fallbacks in 24 h" in mail
    )
    assert "https://review.example.org/dashboard" in mail
    assert any(e.kind == "alert.sent" for e in events_all(engine))


def events_all(engine):
    from sqlalchemy import select

    from reviewqueue.models import Event

    with store.read(engine) as tx:
        return list(tx.session.scalars(select(Event)))


def test_cli_add_list_test_remove(db_url, smtp):
    engine = _engine(db_url)
    queues.create("support", {"alerts": {"oldest_waiting_seconds": 3600}}, engine=engine)
    runner = CliRunner()
    port = free_port()
    with SlackLike(port) as hook:
        out = runner.invoke(app, ["notify", "add", "slack", f"http://127.0.0.1:{port}/T000/B000/secret"])
        assert out.exit_code == 0 and "secret" not in out.output, out.output
        assert (
            runner.invoke(
                app, ["notify", "add", "email", "oncall@example.org", "--queue", "support"]
            ).exit_code
            == 0
        )
        listed = runner.invoke(app, ["notify", "list"]).output
        assert "127.0.0.1" in listed and "oncall@example.org" in listed and "secret" not in listed
        tested = runner.invoke(app, ["notify", "test"])
        assert tested.exit_code == 0 and tested.output.count("sent") == 2, tested.output
        assert hook.received[0]["text"].startswith("*reviewqueue: test message*")
        checked = runner.invoke(app, ["notify", "check"])
        assert "oldest_waiting_seconds" in checked.output and "ok" in checked.output
        assert runner.invoke(app, ["notify", "remove", "1"]).exit_code == 0
        gone = runner.invoke(app, ["notify", "remove", "1"])
        # (typer's runner hands the error back; the real CLI prints it: tests/test_cli.py)
        assert gone.exit_code != 0 and "no active notification channel 1" in str(gone.exception)
    assert "test message" in smtp.messages[0][1]
    assert [e.kind for e in events_all(engine) if e.kind.startswith("notify.")] == [
        "notify.added",
        "notify.added",
        "notify.removed",
    ]
