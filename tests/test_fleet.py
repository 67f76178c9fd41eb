"""Several processes on one database: the pieces each node relies on, one at a time.
(tests/test_nodes.py runs them together: three API nodes, a worker and a skewed clock.)"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlmodel import select

from reviewqueue import (
    audit,
    clock,
    cluster,
    export,
    ingest,
    jobs,
    netaddr,
    outbox,
    queues,
    retention,
    review,
    store,
    webhooks,
)
from reviewqueue.errors import KeyMismatch, ValidationFailed
from reviewqueue.models import Event
from reviewqueue.settings import Settings

from .conftest import LocalServer, item, quiet_handler, seal_now

# --- one clock -----------------------------------------------------------------------


def test_now_is_the_database_clock_carried_on_the_monotonic_clock(monkeypatch):
    """A host 2.5 s behind the database stamps the database's time after one reading,
    and a step of its wall clock changes nothing."""
    monkeypatch.setattr(clock, "_anchor", None)
    monkeypatch.setattr(clock, "_synced_at", None)
    database_ahead = 2.5
    skew = clock.sync(lambda: time.time() + database_ahead)
    assert skew == pytest.approx(-database_ahead, abs=0.05)
    assert (clock.now() - datetime.now(UTC)).total_seconds() == pytest.approx(database_ahead, abs=0.05)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # the host's clock steps back an hour
    assert (clock.now() - datetime.fromtimestamp(real_time(), UTC)).total_seconds() == pytest.approx(
        database_ahead, abs=0.05
    )
    assert not clock.sync_due()


def test_a_slow_reading_does_not_replace_a_good_one(monkeypatch):
    """Under load a round trip may take long, and the reading could be off by half of
    it: it is not trusted over the last good one, and it is taken again soon."""
    monkeypatch.setattr(clock, "_anchor", None)
    monkeypatch.setattr(clock, "_synced_at", None)
    clock.sync(lambda: time.time() + 10.0)  # a good, quick reading: the database is 10 s ahead

    def slow():
        time.sleep(clock.MAX_ROUND_TRIP * 2)
        return time.time() + 20.0

    clock.sync(slow)
    assert (clock.now() - datetime.now(UTC)).total_seconds() == pytest.approx(10.0, abs=0.1)
    assert not clock.sync_due()
    monkeypatch.setattr(clock, "_synced_at", clock._synced_at - clock.RETRY_SECONDS - 0.01)
    assert clock.sync_due()


@pytest.mark.skipif(not __import__("os").environ.get("REVIEWQUEUE_TEST_POSTGRES_URL"), reason="PostgreSQL")
def test_a_postgresql_unit_of_work_reads_the_servers_clock(pg_migrated, monkeypatch):
    monkeypatch.setattr(clock, "_anchor", None)
    monkeypatch.setattr(clock, "_synced_at", None)
    engine = store.make_engine(pg_migrated)
    try:
        with store.read(engine) as tx:
            server = tx.execute(text("SELECT clock_timestamp()")).scalar()
        assert clock._anchor is not None
        assert abs((clock.now() - server).total_seconds()) < 0.5
    finally:
        store.dispose(engine)


def test_audit_seals_follow_the_database_order_not_host_clocks(engine, queue, fake_clock):
    """Events stamped by a host far behind (an hour) land in the next seal instead of
    behind one already made, and the chain verifies."""
    ingest.submit(item(1), engine=engine)
    first = seal_now(engine)
    assert first is not None
    fake_clock.advance(-3600)  # this "host" runs an hour behind
    ingest.submit(item(2), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(3600)
    second = seal_now(engine)
    assert second is not None and second.number == 2 and second.events >= 3
    result = audit.verify(engine=engine)
    assert result.ok and result.seals == 2 and result.unsealed == 0, result.problem


# --- one key -----------------------------------------------------------------------


def test_the_first_node_records_its_key_and_another_key_is_refused(engine, tmp_path, db_url):
    mine = cluster.check_key(engine=engine)
    assert cluster.recorded_fingerprint(engine=engine) == mine
    assert cluster.check_key(engine=engine) == mine  # the same key again: fine
    from cryptography.fernet import Fernet

    other = store.make_engine(
        db_url, settings=Settings(database_url=db_url, secret_key=Fernet.generate_key().decode())
    )
    try:
        with pytest.raises(KeyMismatch, match="REVIEWQUEUE_SECRET_KEY") as refused:
            cluster.check_key(engine=other)
        assert mine in str(refused.value)
        # A host with no key at all does not make one beside a database that has one.
        keyless = store.make_engine(
            db_url,
            settings=Settings(database_url=db_url, secret_key_file=str(tmp_path / "new" / "secret.key")),
        )
        with pytest.raises(KeyMismatch, match="has none"):
            cluster.check_key(engine=keyless)
        assert not (tmp_path / "new" / "secret.key").exists()
        store.dispose(keyless)
    finally:
        store.dispose(other)


def test_a_node_with_another_key_does_not_start(engine, db_url):
    from cryptography.fernet import Fernet
    from fastapi.testclient import TestClient

    from reviewqueue.api.app import create_app

    cluster.check_key(engine=engine)
    app = create_app(
        db_url,
        settings=Settings(database_url=db_url, secret_key=Fernet.generate_key().decode()),
        background=False,
    )
    with pytest.raises(KeyMismatch):
        with TestClient(app):
            pass


# --- leaders -------------------------------------------------------------------------


def test_one_leader_at_a_time_and_takeover_when_it_dies(engine, fake_clock):
    assert jobs.lead("seal", holder="a", engine=engine)
    assert not jobs.lead("seal", holder="b", engine=engine)
    assert jobs.lead("seal", holder="a", engine=engine)  # renewing
    fake_clock.advance(jobs.LEASE_SECONDS + 1)  # a died without a word
    assert jobs.lead("seal", holder="b", engine=engine)
    assert not jobs.lead("seal", holder="a", engine=engine)
    jobs.resign("seal", holder="b", engine=engine)
    assert jobs.lead("seal", holder="a", engine=engine)  # at once after a clean stop
    assert jobs.leaders(engine=engine)["seal"][0] == "a"


def test_a_led_job_runs_in_one_of_several_runners(engine):
    runs: list[str] = []
    runners = [
        jobs.Runner([jobs.Job("count", lambda _e, n=n: runs.append(n) and False, 0.05)], engine, holder=n)
        for n in ("a", "b", "c")
    ]
    for r in runners:
        r.start()
    deadline = time.monotonic() + 20  # a loaded machine may take a while to start threads
    while len(runs) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = list(runs)  # (once the leader stops and resigns, another may take over: rightly)
    for r in runners:
        r.stop()
    assert len(seen) >= 10 and len(set(seen)) == 1, seen


# --- webhooks: in order, and nothing after removal or erasure --------------------------


class _Receiver(quiet_handler()):
    def do_POST(self):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with owner.lock:
            owner.calls += 1
            fail = owner.fail_every and owner.calls % owner.fail_every == 0
        if owner.delay:
            time.sleep(owner.delay)
        if not fail:
            with owner.lock:
                owner.received.append((time.monotonic(), json.loads(body)))
        self.send_response(500 if fail else 200)
        self.end_headers()


class Receiver(LocalServer):
    def __init__(self, *, fail_every: int = 0, delay: float = 0.0):
        self.received, self.calls, self.lock = [], 0, threading.Lock()
        self.fail_every, self.delay = fail_every, delay
        super().__init__(_Receiver)


@pytest.fixture(autouse=True)
def _receivers_on_this_machine(monkeypatch):
    """The receivers here listen on 127.0.0.1, which webhooks refuse unless allowed."""
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")


def test_one_items_notifications_arrive_in_order_with_failures_and_two_deliverers(engine, queue, fake_clock):
    """decide → undo → decide on 30 items, a receiver failing every third POST, two
    delivery workers racing: every item's notifications arrive in sequence order and the
    last one is its final decision."""
    with Receiver(fail_every=3) as rx:
        webhooks.add("support", f"{rx.base}/hook", engine=engine)
        ids = [ingest.submit(item(i), engine=engine).id for i in range(30)]
        for _ in ids:
            held = review.claim_next("support", "ann", engine=engine)
            first = review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
            review.undo(first.id, "ann", engine=engine)
            review.decide(held.id, "ann", {"verdict": "correct", "final_output": "fixed"}, engine=engine)
        deadline = time.monotonic() + 60

        def drain():
            while time.monotonic() < deadline:
                if webhooks.deliver_due(engine=engine) == 0:
                    fake_clock.advance(5)  # past the back-off of failed ones
                    with store.read(engine) as tx:
                        left = tx.execute(
                            text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
                        )
                        if left.scalar() == 0:
                            return

        workers = [threading.Thread(target=drain) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    by_item: dict[str, list] = {}
    for _, body in sorted(rx.received, key=lambda r: r[0]):
        by_item.setdefault(body["item_id"], []).append((body["sequence"], body["type"]))
    assert set(by_item) == set(ids)
    for got in by_item.values():
        sequences = [s for s, _ in got]
        assert sequences == sorted(sequences) and sorted(set(sequences)) == [1, 2, 3], got
        assert got[-1] == (3, "item.decided")


def test_a_removed_webhook_gets_nothing_after_removal_returns(engine, queue):
    """A slow receiver, a delivery in flight when the webhook is removed: removal waits
    for it, and afterwards not one more POST arrives."""
    with Receiver(delay=0.6) as rx:
        hook, _ = webhooks.add("support", f"{rx.base}/hook", engine=engine)
        for i in range(20):
            ingest.submit(item(i), engine=engine)
            held = review.claim_next("support", "ann", engine=engine)
            review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
        worker = webhooks.Worker(engine, interval=0.05).start()
        try:
            deadline = time.monotonic() + 20
            while rx.calls == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert rx.calls >= 1  # one is in flight
            webhooks.remove(hook.id, engine=engine)
            removed_at = time.monotonic()
            calls = rx.calls
            time.sleep(1.5)
            assert rx.calls == calls
            assert all(t <= removed_at for t, _ in rx.received)
        finally:
            worker.stop()
    status = {s["id"]: s for s in webhooks.status(engine=engine)}[hook.id]
    assert status["pending"] == 0 and outbox.in_flight(engine, webhook_id=hook.id) == 0


def test_an_erased_item_is_never_posted_after_erasure_returns(engine, queue):
    with Receiver(delay=0.5) as rx:
        webhooks.add("support", f"{rx.base}/hook", engine=engine)
        r = ingest.submit(item(1, output="secret@example.com"), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        first = review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
        review.undo(first.id, "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "correct", "final_output": "x@example.com"}, engine=engine)
        worker = webhooks.Worker(engine, interval=0.05).start()
        try:
            deadline = time.monotonic() + 20
            while rx.calls == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            retention.erase(r.id, actor="dpo", engine=engine)
            erased_at = time.monotonic()
            time.sleep(1.5)
        finally:
            worker.stop()
    assert rx.calls == 1 and all(t <= erased_at for t, _ in rx.received)


# --- purges ----------------------------------------------------------------------------


def test_three_purgers_at_once_count_every_item_once(engine, fake_clock):
    queues.create("old", {"threshold": 0.8, "retention_days": 1}, engine=engine)
    ingest.submit_many([item(i, queue="old") for i in range(2500)], engine=engine)
    fake_clock.advance(2 * 86400)
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(retention.purge(engine=engine))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.get("old", 0) for r in results) == 2500
    with store.read(engine) as tx:
        counted = sum(
            e.after["count"] for e in tx.session.exec(select(Event).where(Event.kind == "items.purged"))
        )
        stamped = tx.execute(text("SELECT count(DISTINCT updated_at) FROM items")).scalar()
    assert counted == 2500
    assert stamped <= 3 * 3  # each item stamped by the one batch that scrubbed it


# --- pool and readiness ------------------------------------------------------------------


def test_a_request_that_finds_no_connection_gets_503_with_retry_after(db_url, engine, make_token):
    from fastapi.testclient import TestClient

    from reviewqueue.api.app import create_app

    headers = make_token("read")
    settings = Settings(database_url=db_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.3)
    app = create_app(db_url, settings=settings, background=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        if store.is_sqlite(app.state.engine):
            pytest.skip("SQLite's pool is not the server's connection limit")
        held = app.state.engine.raw_connection()  # the one connection, taken
        try:
            r = client.get("/v1/queues", headers=headers)
            assert r.status_code == 503 and r.headers["Retry-After"] == "2", r.text
            assert "try again" in r.json()["detail"]
            assert client.get("/livez").status_code == 200
            assert client.get("/readyz").status_code == 200  # its own connection
        finally:
            held.close()
        assert client.get("/v1/queues", headers=headers).status_code == 200


def test_a_draining_process_says_so_and_closes_connections(api):
    from reviewqueue.api import lifecycle

    lifecycle.draining.set()
    try:
        r = api.get("/readyz")
        assert r.status_code == 503 and r.json() == {"status": "draining"}
        assert api.get("/livez").status_code == 200
        served = api.get("/openapi.json")
        assert served.status_code == 200 and served.headers["connection"] == "close"
    finally:
        lifecycle.draining.clear()
    assert api.get("/readyz").status_code == 200


# --- feeds -----------------------------------------------------------------------------


def test_a_feed_on_a_host_that_cannot_see_its_folder_is_refused(engine, queue, tmp_path, fake_clock):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(2)
    [first] = export.export(tmp_path / "out", fmt="jsonl", engine=engine)
    with store.write(engine) as tx:  # as if another host had written it to its own disk
        tx.execute(text("UPDATE export_runs SET host = 'other-host'"))
    first.path.unlink()
    with pytest.raises(ValidationFailed, match="on host other-host"):
        export.export(tmp_path / "out", fmt="jsonl", engine=engine)


# --- client address ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer, forwarded, trusted, client",
    [
        ("203.0.113.7", None, "", "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", "", "203.0.113.7"),  # not a trusted proxy: header ignored
        ("127.0.0.1", "198.51.100.1", "127.0.0.1", "198.51.100.1"),
        ("10.0.0.5", "198.51.100.1, 10.0.0.9", "10.0.0.0/8", "198.51.100.1"),  # two proxies
        ("10.0.0.5", "6.6.6.6, 198.51.100.1", "10.0.0.0/8", "198.51.100.1"),  # a forged left part
        ("10.0.0.5", "garbage", "10.0.0.0/8", "10.0.0.5"),
        ("::1", "2001:db8::5", "::1", "2001:db8::5"),
    ],
)
def test_client_address_believes_only_trusted_proxies(peer, forwarded, trusted, client):
    assert netaddr.client_address(peer, forwarded, trusted) == client


def test_a_bad_trusted_proxies_setting_says_which_entry():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        netaddr.trusted_networks("127.0.0.1, 10.0.0.0/33")


def test_delivery_timestamps_keep_their_order_with_a_skewed_clock(engine, queue, fake_clock):
    """The sequence, not a host's time, orders an item's notifications: the undo comes
    from a host whose clock is 20 s behind the one that decided."""
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    webhooks.add("support", "http://127.0.0.1:9/hook", engine=engine)
    first = review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(-20)
    review.undo(first.id, "ann", engine=engine)
    with store.read(engine) as tx:
        rows = tx.execute(text("SELECT sequence, body FROM webhook_deliveries ORDER BY id")).all()
    assert [r.sequence for r in rows] == [1, 2] == [json.loads(r.body)["sequence"] for r in rows]
