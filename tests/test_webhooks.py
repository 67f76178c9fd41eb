"""Webhook delivery to a real local receiver: signed, at least once, surviving the
receiver being down and the worker restarting."""

import json

import pytest

from reviewqueue import ingest, outbox, review, webhooks

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


def decide_one(engine, verdict=None):
    r = ingest.submit(item(1, output="draft"), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", verdict or {"verdict": "correct", "final_output": "fixed"}, engine=engine)
    return r.id


def test_decision_is_delivered_signed(engine, queue):
    port = free_port()
    hook = webhooks.add("support", f"http://127.0.0.1:{port}/hook", engine=engine)
    item_id = decide_one(engine)
    with Receiver(port) as rx:
        assert webhooks.deliver_due(engine=engine) == 1
    headers, body = rx.received[0]
    assert webhooks.verify(hook.secret, body, headers["X-Reviewqueue-Signature"])
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
    leased = outbox.lease_due(engine, 10, webhooks.LEASE)  # the "crashed" worker took it and never reported
    assert len(leased) == 1
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
