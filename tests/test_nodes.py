"""A fleet on one PostgreSQL, tried as it runs: three API nodes (one with its clock 3 s
ahead under Debian's faketime), a background worker, a webhook receiver that fails
every fifth POST, and clients that go through a load balancer of their own (it asks
each node's /readyz every 0.2 s and sends only to ready ones). Mid-load one node is
killed with SIGKILL and another stopped with SIGTERM.

Afterwards: no item lost or stored twice, never two reviewers holding one item, exactly
the required reviews per item, every item's notifications in sequence order ending on
its final one, the audit chain verifies, the export feed holds every final decision
once, no request reset by the node that drained, purge counts exact with three purgers,
and a node with another server key refused at start.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from reviewqueue import audit, clock, export, ingest, queues, retention, store, tokens, users, webhooks

from .conftest import PG_URL, LocalServer, _truncate_pg, free_port, quiet_handler

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PG_URL, reason="a fleet shares one PostgreSQL (set REVIEWQUEUE_TEST_POSTGRES_URL)"
    ),
    pytest.mark.skipif(
        not shutil.which("faketime"), reason="needs Debian's faketime (apt-get install faketime)"
    ),
]

KEY = "bm9kZXMgc2hhcmUgb25lIGtleSwgMzIgYnl0ZXMhISE="  # 32 bytes, url-safe base64
SOLO, PAIR, OLD = "solo", "pair", "old"
REVIEWERS = [f"rev{i}" for i in range(8)]


class _Hook(quiet_handler()):
    def do_POST(self):
        owner = self.server.owner
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with owner.lock:
            owner.calls += 1
            fail = owner.calls % 5 == 0
            if not fail:
                owner.received.append(body)
        self.send_response(500 if fail else 200)
        self.end_headers()


class Hook(LocalServer):
    def __init__(self):
        self.lock, self.calls, self.received = threading.Lock(), 0, []
        super().__init__(_Hook)


class Node:
    def __init__(self, name: str, env: dict, *, faketime: str | None = None):
        self.name, self.port = name, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "reviewqueue.cli",
            "api",
            "--port",
            str(self.port),
            "--drain-seconds",
            "2",
        ]
        if faketime:
            # The wall clock is off; the monotonic clock, which has no absolute meaning,
            # is left alone (libfaketime's faked one also stalls timed waits).
            command = ["faketime", "-f", faketime, *command]
            env = {**env, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        self.log = open(env["RQ_TEST_LOGS"] + f"/{name}.log", "w")  # noqa: SIM115
        # A session of its own: faketime runs the node as its child, and stopping the
        # node means signalling both (Node.kill, Node.signal).
        self.proc = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited: {Path(self.log.name).read_text()[-2000:]}"
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready")


class Balancer:
    """Sends each request to a ready node (round-robin), as a load balancer that checks
    /readyz every 0.2 s would; a node it cannot reach is taken out at once."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes
        self.ready = {n.name for n in nodes}
        self.lock = threading.Lock()
        self.resets: Counter = Counter()  # requests a node dropped after accepting them
        self.served: Counter = Counter()
        self.stop = threading.Event()
        self._turn = 0
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        with httpx.Client(timeout=1) as client:
            while not self.stop.wait(0.2):
                for node in self.nodes:
                    try:
                        ok = client.get(node.base + "/readyz").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with self.lock:
                        (self.ready.add if ok else self.ready.discard)(node.name)

    def pick(self, avoid: str | None = None) -> Node:
        """A ready node, other than ``avoid`` when there is another."""
        for _ in range(200):
            with self.lock:
                ready = [n for n in self.nodes if n.name in self.ready]
                if len(ready) > 1:
                    ready = [n for n in ready if n.name != avoid]
                if ready:
                    self._turn += 1
                    return ready[self._turn % len(ready)]
            time.sleep(0.05)
        raise AssertionError("no node is ready")

    def send(self, client: httpx.Client, method: str, path: str, *, avoid: str | None = None, **kw):
        """The response, and the node that gave it; a request a node dropped is sent again
        to another (callers make their requests safe to repeat)."""
        for _ in range(20):
            node = self.pick(avoid)
            try:
                response = client.request(method, node.base + path, **kw)
                with self.lock:
                    self.served[node.name] += 1
                return response, node
            except httpx.ConnectError:
                with self.lock:
                    self.ready.discard(node.name)
            except httpx.TransportError:
                with self.lock:
                    self.resets[node.name] += 1
                    self.ready.discard(node.name)
        raise AssertionError(f"{method} {path}: no node answered")


@pytest.fixture
def fleet_db(pg_migrated, tmp_path, monkeypatch):
    _truncate_pg(pg_migrated)
    monkeypatch.setenv("REVIEWQUEUE_DATABASE_URL", pg_migrated)
    monkeypatch.setenv("REVIEWQUEUE_SECRET_KEY", KEY)
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("REVIEWQUEUE_AUDIT_ANCHOR_FILE", str(tmp_path / "audit-anchor.log"))
    monkeypatch.setenv("REVIEWQUEUE_EXPORT_DIR", str(tmp_path / "exports"))
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    engine = store.get_engine(pg_migrated)
    yield engine
    store.dispose_engines()
    get_settings.cache_clear()


def _setup(engine, hook: Hook) -> dict:
    queues.create(SOLO, {"threshold": 0.8, "audit_rate": 0.0, "lease_seconds": 60}, engine=engine)
    queues.create(
        PAIR, {"threshold": 0.8, "audit_rate": 0.0, "lease_seconds": 60, "reviews_required": 2}, engine=engine
    )
    queues.create(OLD, {"threshold": 0.8, "retention_days": 1}, engine=engine)
    for q in (SOLO, PAIR):
        webhooks.add(q, f"{hook.base}/hook", engine=engine)
    headers = {}
    for name in REVIEWERS:
        users.add(name, password="password-123", engine=engine)
        _, plain = tokens.create(f"t-{name}", "review", user=name, engine=engine)
        headers[name] = {"Authorization": f"Bearer {plain}"}
    _, plain = tokens.create("poster", "ingest", engine=engine)
    headers["ingest"] = {"Authorization": f"Bearer {plain}"}
    return headers


def test_three_nodes_a_worker_and_a_skewed_clock_on_one_postgresql(fleet_db, tmp_path):
    engine = fleet_db
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "RQ_TEST_LOGS": str(logs)}
    with Hook() as hook:
        headers = _setup(engine, hook)
        # Content past its retention, for three purgers at once (written as of 3 days ago).
        real = clock.now
        with clock.travelling(lambda: real() - timedelta(days=3)):
            ingest.submit_many(
                [
                    {"queue": OLD, "external_id": f"o{i}", "input": "x", "output": "y", "confidence": 0.1}
                    for i in range(1500)
                ],
                engine=engine,
            )
        nodes = [Node("a", env), Node("b", env), Node("c", env, faketime="+3s")]
        worker = subprocess.Popen(
            [sys.executable, "-m", "reviewqueue.cli", "worker"],
            env=env,
            stdout=open(logs / "worker.log", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        try:
            for node in nodes:
                node.wait_ready()
            _run_load(engine, nodes, headers, hook, tmp_path, worker)
        finally:
            for node in nodes:
                node.kill()
                node.proc.wait(timeout=30)
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)


def _run_load(engine, nodes, headers, hook, tmp_path, worker) -> None:
    lb = Balancer(nodes)
    posted: dict[str, str] = {}  # external id -> item id, as every node answered
    conflicts: list[str] = []
    lock = threading.Lock()
    progress = {"decided": 0}
    total_solo, total_pair = 240, 60

    def post(external_ids: list[str], queue: str) -> None:
        with httpx.Client(timeout=30) as client:
            for ext in external_ids:
                body = {"queue": queue, "external_id": ext, "input": f"in {ext}", "output": f"out {ext}"}
                body["confidence"] = 0.3
                r, _ = lb.send(client, "POST", "/v1/items", json=body, headers=headers["ingest"])
                assert r.status_code in (200, 201), r.text
                with lock:
                    if posted.setdefault(ext, r.json()["id"]) != r.json()["id"]:
                        conflicts.append(ext)

    # Every external id posted twice, by two threads racing, through any node.
    ids = [(f"s{i}", SOLO) for i in range(total_solo)] + [(f"p{i}", PAIR) for i in range(total_pair)]
    posters = []
    for order in (ids, list(reversed(ids))):
        for q in (SOLO, PAIR):
            chunk = [e for e, qq in order if qq == q]
            posters.append(threading.Thread(target=post, args=(chunk, q), daemon=True))
    for t in posters:
        t.start()
    for t in posters:
        t.join()
    assert not conflicts and len(posted) == total_solo + total_pair

    undo_budget = {"left": 100}

    def reviewer(name: str) -> None:
        rng = random.Random(name)
        with httpx.Client(timeout=30) as client:
            idle = 0
            while idle < 3:
                queue = SOLO if rng.random() < 0.7 else PAIR
                r, claimed_on = lb.send(client, "POST", f"/v1/queues/{queue}/claim", headers=headers[name])
                if r.status_code == 204:
                    other = PAIR if queue == SOLO else SOLO
                    r, claimed_on = lb.send(
                        client, "POST", f"/v1/queues/{other}/claim", headers=headers[name]
                    )
                    if r.status_code == 204:
                        idle += 1
                        time.sleep(0.3)
                        continue
                assert r.status_code == 200, r.text
                idle = 0
                held = r.json()
                verdict = (
                    {"verdict": "approve"} if rng.random() < 0.6 else {"verdict": "reject", "reason": "other"}
                )
                # Decided on another node than the one that handed the item out.
                if not _decide(lb, client, held["id"], verdict, headers[name], avoid=claimed_on.name):
                    continue
                if held["queue"] == SOLO:
                    with lock:
                        take = undo_budget["left"] > 0
                        undo_budget["left"] -= take
                    if take:
                        _undo_and_decide_again(lb, client, held["id"], headers[name])
                with lock:
                    progress["decided"] += 1

    threads = [threading.Thread(target=reviewer, args=(n,), daemon=True) for n in REVIEWERS]
    feed_runs = []
    stop_feed = threading.Event()

    def feed() -> None:  # the README's incremental feed, run while everything happens
        while not stop_feed.wait(1.5):
            try:
                feed_runs.extend(
                    export.export(tmp_path / "feed", fmt="jsonl", queues=[SOLO, PAIR], engine=engine)
                )
            except Exception as exc:  # reported by the test
                feed_runs.append(exc)

    purgers = [threading.Thread(target=lambda: retention.purge(engine=engine), daemon=True) for _ in range(2)]
    feeder = threading.Thread(target=feed, daemon=True)
    for t in [*threads, feeder, *purgers]:
        t.start()
    cli_purge = subprocess.Popen([sys.executable, "-m", "reviewqueue.cli", "purge"], env={**os.environ})

    try:
        _check(locals())
    finally:
        stop_feed.set()
        lb.stop.set()
        if cli_purge.poll() is None:
            cli_purge.kill()


def _check(run: dict) -> None:
    engine, nodes, lb, hook, tmp_path = run["engine"], run["nodes"], run["lb"], run["hook"], run["tmp_path"]
    threads, purgers, feeder, cli_purge = run["threads"], run["purgers"], run["feeder"], run["cli_purge"]
    progress, posted, feed_runs, stop_feed = (
        run["progress"],
        run["posted"],
        run["feed_runs"],
        run["stop_feed"],
    )
    worker = run["worker"]
    # Mid-load: node b is killed outright, node a is asked to stop.
    _wait_for(lambda: progress["decided"] >= 60, 120)
    nodes[1].kill()
    _wait_for(lambda: progress["decided"] >= 140, 120)
    nodes[0].signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=300)
    assert nodes[0].proc.wait(timeout=60) == 0  # drained and exited cleanly
    for t in purgers:
        t.join()
    assert cli_purge.wait(timeout=120) == 0
    stop_feed.set()
    feeder.join()
    lb.stop.set()

    # Everything decided and every notification sent (the worker and node c deliver).
    _wait_for(lambda: _pending_deliveries(engine) == 0, 120)
    assert lb.resets["a"] == 0, lb.resets  # the drained node dropped nothing
    assert min(lb.served[n] for n in "abc") > 0, lb.served  # every node took part, the skewed one too

    with store.read(engine) as tx:
        items = tx.execute(text("SELECT id, queue, external_id, status, webhook_seq FROM items")).all()
        reviews = tx.execute(
            text("SELECT item_id, reviewer FROM reviews WHERE undone_at IS NULL AND adjudication = false")
        ).all()
        events = tx.execute(
            text("SELECT item_id, kind, actor FROM events WHERE item_id IS NOT NULL ORDER BY id")
        ).all()
        purge_counts = tx.execute(
            text("SELECT after FROM events WHERE kind = 'items.purged' AND queue = :q"), {"q": OLD}
        ).scalars()
        purged = tx.execute(
            text("SELECT count(*) FROM items WHERE queue = :q AND purged_at IS NOT NULL"), {"q": OLD}
        )
        purged = purged.scalar()
    by_queue = defaultdict(list)
    for row in items:
        by_queue[row.queue].append(row)

    # No item lost or stored twice.
    assert sorted(r.external_id for r in by_queue[SOLO] + by_queue[PAIR]) == sorted(posted)
    assert {r.id for r in by_queue[SOLO] + by_queue[PAIR]} == set(posted.values())
    # Every waiting item was reviewed: the solo ones once, the pairs twice, by two people.
    per_item = defaultdict(list)
    for r in reviews:
        per_item[r.item_id].append(r.reviewer)
    assert all(r.status in ("approved", "rejected") for r in by_queue[SOLO]), Counter(r.status for r in items)
    assert all(len(per_item[r.id]) == 1 for r in by_queue[SOLO])
    assert all(r.status in ("approved", "rejected", "disputed") for r in by_queue[PAIR])
    assert all(len(per_item[r.id]) == 2 == len(set(per_item[r.id])) for r in by_queue[PAIR])
    # Never two reviewers holding one item: replay each item's history.
    holder: dict[str, str | None] = {}
    for e in events:
        if e.kind == "item.claimed":
            assert holder.get(e.item_id) in (None, e.actor), (e.item_id, holder.get(e.item_id), e.actor)
            holder[e.item_id] = e.actor
        elif e.kind in (
            "item.decided",
            "item.reviewed",
            "item.released",
            "item.lease_expired",
            "item.disputed",
        ):
            holder[e.item_id] = None
        elif e.kind == "item.decision_undone":
            holder[e.item_id] = e.actor
    # Each item's notifications arrived in order, ending on its latest one.
    seen = defaultdict(list)
    for body in hook.received:
        seen[body["item_id"]].append(body["sequence"])
    final_seq = {r.id: r.webhook_seq for r in items if r.queue in (SOLO, PAIR)}
    for item_id, sequences in seen.items():
        deduped = [s for i, s in enumerate(sequences) if i == 0 or s != sequences[i - 1]]
        assert deduped == sorted(set(deduped)), (item_id, sequences)
        assert deduped[-1] == final_seq[item_id]
    assert {i for i, s in final_seq.items() if s} == set(seen)
    # The audit chain verifies, with one node's clock 3 s off.
    audit.seal(engine=engine)
    result = audit.verify(engine=engine)
    assert result.ok, result.problem
    # The feed holds every final decision exactly once.
    feed_runs.extend(export.export(tmp_path / "feed", fmt="jsonl", queues=[SOLO, PAIR], engine=engine))
    assert not [r for r in feed_runs if isinstance(r, Exception)], feed_runs
    # Read as a consumer does: the feed's folders, whatever the runs returned.
    rows = [
        json.loads(line)
        for q in (SOLO, PAIR)
        for f in sorted((tmp_path / "feed" / "jsonl" / q / "feeds" / "jsonl").glob("*/data.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert len({(r["item_id"], r["decided_at"]) for r in rows}) == len(rows)  # no decision twice
    latest = {}
    for r in sorted(rows, key=lambda r: r["decided_at"]):
        latest[r["item_id"]] = r["verdict"]
    finals = {r.id for r in items if r.status in ("approved", "rejected")}
    if set(latest) != finals:  # what the feed missed, and why
        ids = sorted(finals - set(latest))
        with store.read(engine) as tx:
            missed = tx.execute(
                text("SELECT id, queue, decided_at, final_review_id FROM items WHERE id = ANY(:ids)"),
                {"ids": ids},
            ).all()
            history = tx.execute(
                text(
                    "SELECT item_id, kind, actor, at, seq FROM events WHERE item_id = ANY(:ids) ORDER BY id"
                ),
                {"ids": ids},
            ).all()
            reviews_of = tx.execute(
                text(
                    "SELECT id, item_id, reviewer, created_at, undone_at FROM reviews WHERE item_id = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
            runs_seen = tx.execute(
                text("SELECT queue, since, until, rows, created_at FROM export_runs ORDER BY id")
            ).all()
        t = lambda d: d.strftime("%M:%S.%f") if d else None  # noqa: E731
        raise AssertionError(
            "missed "
            + "; ".join(
                f"{m.id[-6:]} {m.queue} decided {t(m.decided_at)} final {m.final_review_id}" for m in missed
            )
            + "\nhistory "
            + "; ".join(f"{h.item_id[-6:]} {h.kind} {h.actor} {t(h.at)} seq {h.seq}" for h in history)
            + "\nreviews "
            + "; ".join(
                f"{r.id} {r.item_id[-6:]} {r.reviewer} {t(r.created_at)} undone {t(r.undone_at)}"
                for r in reviews_of
            )
            + "\nruns "
            + "; ".join(
                f"{r.queue} {t(r.since)}-{t(r.until)} n={r.rows} at {t(r.created_at)}" for r in runs_seen
            )
        )
    # Three purgers at once (the worker's job, two threads, the CLI): each item once.
    assert purged == 1500 and sum(c["count"] for c in purge_counts) == 1500
    # A node with another server key does not start, and says what to set.
    other = subprocess.run(
        [sys.executable, "-m", "reviewqueue.cli", "api", "--port", str(free_port())],
        env={**os.environ, "REVIEWQUEUE_SECRET_KEY": "YW5vdGhlciBrZXkgb2YgdGhpcnR5LXR3byBieXRlcyE="},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 1 and "REVIEWQUEUE_SECRET_KEY" in other.stderr, other.stderr
    assert worker.poll() is None


def _decide(lb: Balancer, client, item_id: str, verdict: dict, headers: dict, *, avoid: str) -> bool:
    """Decide; a response lost with a killed node is retried: a 409 then means the first
    attempt landed. Whether the decision stands."""
    r, _ = lb.send(
        client, "POST", f"/v1/items/{item_id}/decision", json=verdict, headers=headers, avoid=avoid
    )
    if r.status_code == 200:
        return True
    assert r.status_code == 409, r.text
    return False


def _undo_and_decide_again(lb: Balancer, client, item_id: str, headers: dict) -> None:
    with httpx.Client(timeout=30) as c:
        r, _ = lb.send(c, "GET", f"/v1/items/{item_id}", headers=headers)
    review_id = max(rv["id"] for rv in r.json()["reviews"])
    r, _ = lb.send(client, "POST", f"/v1/reviews/{review_id}/undo", headers=headers)
    if r.status_code != 200:
        return  # the undo's first attempt landed on a node that died; the item stays as it was
    r, _ = lb.send(
        client, "POST", f"/v1/items/{item_id}/decision", json={"verdict": "approve"}, headers=headers
    )
    assert r.status_code in (200, 409), r.text


def _pending_deliveries(engine) -> int:
    with store.read(engine) as tx:
        return tx.execute(text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")).scalar()


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
