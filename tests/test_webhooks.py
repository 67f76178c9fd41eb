"""Webhook delivery to a real local receiver: signed, at least once, surviving the
receiver being down and the worker restarting."""

import json

import pytest
from sqlalchemy import text

from reviewqueue import ingest, outbox, review, store, webhooks

from .conftest import LocalServer, free_port, item, quiet_handler


class _Record(quiet_handler()):
    def do_POST(self):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers["Content-Length"]))
        owner.received.append((dict(self.headers), body))
        self.send_response(owner.status)
        self.end_headers()


class Receiver(LocalServer):
    """Records every POST (and can answer errors)."""

    def __init__(self, port: int, status: int = 200):
        self.status, self.received = status, []
        super().__init__(_Record, port)


@pytest.fixture(autouse=True)
def _receivers_on_this_machine(monkeypatch):
    """The receivers here listen on 127.0.0.1, which webhooks refuse unless allowed."""
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")


def decide_one(engine, verdict=None):
    r = ingest.submit(item(1, output="draft"), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", verdict or {"verdict": "correct", "final_output": "fixed"}, engine=engine)
    return r.id


def test_decision_is_delivered_signed(engine, queue):
    port = free_port()
    hook, secret = webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    item_id = decide_one(engine)
    with Receiver(port) as rx:
        assert webhooks.deliver_due(engine=engine) == 1
    headers, body = rx.received[0]
    assert webhooks.verify(secret, body, headers["X-Reviewqueue-Signature"])
    assert not webhooks.verify("wrong-secret", body, headers["X-Reviewqueue-Signature"])
    event = json.loads(body)
    assert event["type"] == "item.decided" and event["item_id"] == item_id and event["external_id"] == "ext-1"
    assert (event["verdict"], event["final_output"], event["reviewer"]) == ("correct", "fixed", "ann")
    assert headers["X-Reviewqueue-Event-Id"] == event["event_id"]
    assert webhooks.deliver_due(engine=engine) == 0  # delivered once, not again
    assert webhooks.status(engine=engine)[0]["delivered"] == 1


def test_receiver_down_then_back(engine, queue, fake_clock):
    port = free_port()
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    decide_one(engine)
    # Down: nothing listens on the port. The failure is recorded and retried later.
    assert webhooks.deliver_due(engine=engine) == 1
    st = webhooks.status(engine=engine)[0]
    assert st["pending"] == 1 and "ConnectError" in st["last_error"]
    assert webhooks.deliver_due(engine=engine) == 0  # backing off
    with Receiver(port, status=503) as rx:  # up, but failing
        fake_clock.advance(2)
        assert webhooks.deliver_due(engine=engine) == 1
        assert "HTTP 503" in webhooks.status(engine=engine)[0]["last_error"]
    for minutes in range(1, 8):  # down for minutes: backoff keeps growing, nothing is lost
        fake_clock.advance(60 * minutes)
        webhooks.deliver_due(engine=engine)
    with Receiver(port) as rx:
        fake_clock.advance(600)
        assert webhooks.deliver_due(engine=engine) == 1
    assert len(rx.received) == 1
    st = webhooks.status(engine=engine)[0]
    assert (st["delivered"], st["pending"], st["failed"]) == (1, 0, 0)


def test_worker_restart_picks_up_leased_deliveries(engine, queue, fake_clock):
    """A worker that died mid-send leaves a lease; once it lapses, another worker sends."""
    port = free_port()
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    decide_one(engine)
    ((delivery_id, _),) = outbox.due(engine, 10)
    # The "crashed" worker took it and never reported.
    assert outbox.claim(engine, delivery_id, webhooks.LEASE) is not None
    with Receiver(port) as rx:
        assert webhooks.deliver_due(engine=engine) == 0  # still leased
        fake_clock.advance(webhooks.LEASE.total_seconds() + 1)
        assert webhooks.deliver_due(engine=engine) == 1
    assert len(rx.received) == 1


def test_background_worker_delivers(engine, queue):
    import time

    port = free_port()
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    with Receiver(port) as rx:
        worker = webhooks.Worker(engine, interval=0.1).start()
        try:
            decide_one(engine)
            deadline = time.monotonic() + 20
            while not rx.received and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
    assert len(rx.received) == 1


def test_undo_is_notified_and_no_webhook_means_no_outbox(engine, queue):
    port = free_port()
    decide_one(engine)  # no webhook yet: nothing queued
    assert webhooks.deliver_due(engine=engine) == 0
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    r = ingest.submit(item(2), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    rv = review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    review.undo(rv.id, "ann", engine=engine)
    with Receiver(port) as rx:
        assert webhooks.deliver_due(engine=engine) == 2
    kinds = sorted(json.loads(b)["type"] for _, b in rx.received)
    assert kinds == ["item.decided", "item.decision_undone"]
    assert all(json.loads(b)["item_id"] == r.id for _, b in rx.received)


def test_webhook_url_must_be_http(engine, queue):
    from reviewqueue.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        webhooks.add("support", "ftp://example.invalid", engine=engine)


def test_signatures_carry_a_timestamp_and_expire():
    body = b'{"a": 1}'
    header = webhooks.sign("s3cret", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert webhooks.verify("s3cret", body, header, now=1_700_000_100)
    assert not webhooks.verify("s3cret", body, header, now=1_700_000_000 + 301)  # a replay, too late
    assert not webhooks.verify("s3cret", body + b" ", header, now=1_700_000_000)
    forged = header.replace("t=1700000000", "t=1700000200")  # a fresh time on an old signature
    assert not webhooks.verify("s3cret", body, forged, now=1_700_000_200)
    assert not webhooks.verify("s3cret", body, "sha256=deadbeef")


def test_the_signing_secret_is_stored_encrypted(engine, queue):
    from sqlalchemy import text

    from reviewqueue import store

    _, secret = webhooks.add("support", "http://127.0.0.1:9/hook", engine=engine)
    with store.read(engine) as tx:
        stored = tx.execute(text("SELECT secret FROM webhooks")).scalar()
    assert secret not in stored and stored.startswith("enc:v1:")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8000/metrics",
        "http://10.0.0.1/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://2130706433/",
        "http://localhost:8000/metrics",
        "http://192.168.1.10/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://user:pass@example.com/",
    ],
)
def test_internal_targets_are_refused(engine, queue, monkeypatch, url):
    """Server-side request forgery: loopback, private, link-local and metadata targets."""
    from reviewqueue.errors import ValidationFailed

    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "0")
    strict = _strict_engine(engine)
    with pytest.raises(ValidationFailed):
        webhooks.add("support", url, engine=strict)


def _strict_engine(engine):
    from reviewqueue import store
    from reviewqueue.settings import Settings

    return store.make_engine(
        engine.url.render_as_string(hide_password=False),
        pool=False,
        settings=Settings(webhook_allow_private=False),
    )


def test_a_target_that_turns_internal_is_refused_at_delivery(engine, queue, monkeypatch):
    """Checked again when sending, on the address the name resolves to then, and the
    receiver's answer never reaches the admins' screens."""
    from reviewqueue import egress

    port = free_port()
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)  # allowed when added
    decide_one(engine)
    strict = _strict_engine(engine)
    with Receiver(port) as rx:
        assert webhooks.deliver_due(engine=strict) == 1
    assert rx.received == []
    assert "refused" in webhooks.status(engine=engine)[0]["last_error"]
    assert egress.public(__import__("ipaddress").ip_address("8.8.8.8"))


class _Chatty(quiet_handler()):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"secret internal answer")


def test_the_receivers_answer_is_never_kept(engine, queue):
    port = free_port()
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    decide_one(engine)
    with LocalServer(_Chatty, port):
        webhooks.deliver_due(engine=engine)
    error = webhooks.status(engine=engine)[0]["last_error"]
    assert error == "HTTP 500" and "secret" not in error


def test_removing_a_webhook_cancels_what_it_had_not_received(engine, queue):
    port = free_port()
    hook, _ = webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    for i in range(3):
        ingest.submit(item(10 + i), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    webhooks.remove(hook.id, actor="adam", engine=engine)
    with Receiver(port) as rx:
        assert webhooks.deliver_due(engine=engine) == 0
    assert rx.received == []
    from sqlalchemy import func, select

    from reviewqueue import store
    from reviewqueue.models import Event, WebhookDelivery

    with store.read(engine) as tx:
        statuses = tx.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        ).all()
        removed = tx.session.scalars(select(Event).where(Event.kind == "webhook.removed")).one()
    assert dict(statuses) == {"cancelled": 3}
    assert removed.actor == "adam" and removed.after["cancelled_deliveries"] == 3


def test_a_dead_receiver_is_tried_once_a_round(engine, queue, monkeypatch):
    """A backlog to a closed port: one attempt a round, the rest wait untried for the
    same back-off, with no attempt counted."""
    port = free_port()
    webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    for i in range(20):
        ingest.submit(item(20 + i), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    sent = []
    real = webhooks._send

    def counting(client, row, settings):
        sent.append(row.id)
        return real(client, row, settings)

    monkeypatch.setattr(webhooks, "_send", counting)
    assert webhooks.deliver_due(engine=engine) == 1
    assert len(sent) == 1
    assert webhooks.deliver_due(engine=engine) == 0  # all of them wait for the back-off
    with store.read(engine) as tx:
        attempts = sorted(tx.execute(text("SELECT attempts FROM webhook_deliveries")).scalars())
    assert attempts == [0] * 19 + [1]
