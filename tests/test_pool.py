"""Connections on a shared PostgreSQL under pressure: a lock on ``items`` held for 20 s
while 400 readers come in through four API nodes. Requests that find no connection in
time get 503 with Retry-After (never a 500, never a dropped connection), /livez and
/readyz keep answering, and the CLI still connects: the nodes' pools together stay
within the server's max_connections."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import text

from reviewqueue import ingest, queues, store, tokens

from .conftest import PG_URL, _truncate_pg
from .test_nodes import KEY, Node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PG_URL, reason="the connection limit is PostgreSQL's"),
]

LOCK_SECONDS = 20


@pytest.fixture
def pg(pg_migrated, tmp_path, monkeypatch):
    _truncate_pg(pg_migrated)
    monkeypatch.setenv("REVIEWQUEUE_DATABASE_URL", pg_migrated)
    monkeypatch.setenv("REVIEWQUEUE_SECRET_KEY", KEY)
    monkeypatch.setenv("REVIEWQUEUE_DB_POOL_TIMEOUT", "3")
    monkeypatch.setenv("REVIEWQUEUE_AUDIT_ANCHOR_FILE", str(tmp_path / "audit-anchor.log"))
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    yield store.get_engine(pg_migrated)
    store.dispose_engines()
    get_settings.cache_clear()


def test_a_locked_items_table_gives_503s_not_500s_and_the_cli_still_connects(pg, tmp_path):
    engine = pg
    queues.create("q", {"threshold": 0.8}, engine=engine)
    ingest.submit_many(
        [{"queue": "q", "input": "i", "output": "o", "confidence": 0.1} for _ in range(50)], engine=engine
    )
    _, plain = tokens.create("reader", "read", engine=engine)
    headers = {"Authorization": f"Bearer {plain}"}
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "RQ_TEST_LOGS": str(logs)}
    nodes = [Node(f"n{i}", env) for i in range(4)]
    try:
        for node in nodes:
            node.wait_ready()
        for node in nodes:  # each node has met the token once (it is cached for a second)
            assert httpx.get(node.base + "/v1/items?queue=q&limit=1", headers=headers).status_code == 200
        locked, release = threading.Event(), threading.Event()

        def hold_lock():
            with engine.connect() as conn:
                conn.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
                locked.set()
                release.wait(LOCK_SECONDS + 30)
                conn.rollback()

        holder = threading.Thread(target=hold_lock, daemon=True)
        holder.start()
        assert locked.wait(10)
        started = time.monotonic()
        probes: Counter = Counter()
        stop_probes = threading.Event()

        def probe():
            with httpx.Client(timeout=3) as client:
                while not stop_probes.wait(0.5):
                    for node in nodes:
                        for path in ("/livez", "/readyz"):
                            try:
                                probes[(path, client.get(node.base + path).status_code)] += 1
                            except httpx.HTTPError as exc:
                                probes[(path, type(exc).__name__)] += 1

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        cli = {}

        def run_cli():
            time.sleep(5)  # while the readers pile up
            cli["result"] = subprocess.run(
                [sys.executable, "-m", "reviewqueue.cli", "user", "list"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        cli_thread = threading.Thread(target=run_cli, daemon=True)
        cli_thread.start()
        threading.Timer(LOCK_SECONDS, release.set).start()
        answers = asyncio.run(_readers(nodes, headers))
        stop_probes.set()
        prober.join()
        cli_thread.join()
        holder.join()
    finally:
        for node in nodes:
            node.kill()
            node.proc.wait(timeout=30)
    statuses = Counter(a[0] for a in answers)
    print(f"statuses {dict(statuses)}, probes {dict(probes)}")
    assert set(statuses) <= {200, 503}, statuses  # no 500, no dropped connection
    assert statuses[503] >= 100 and statuses[200] >= 1, statuses
    assert all(a[1] is not None for a in answers if a[0] == 503)  # Retry-After on each 503
    # A 503 came back soon: the requests did not wait for the lock.
    assert min(a[2] for a in answers if a[0] == 503) < 10
    assert time.monotonic() - started >= LOCK_SECONDS
    assert probes[("/livez", 200)] > 0 and set(p for p, s in probes if s != 200) <= {"/readyz"}, probes
    assert probes[("/readyz", 200)] > 0.9 * sum(n for (p, _), n in probes.items() if p == "/readyz"), probes
    result = cli["result"]
    assert result.returncode == 0, result.stderr
    assert "too many clients" not in result.stderr


async def _readers(nodes, headers) -> list[tuple]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=500)) as client:

        async def read(i: int):
            node = nodes[i % len(nodes)]
            t0 = time.monotonic()
            try:
                r = await client.get(node.base + "/v1/items?queue=q&limit=50", headers=headers)
            except httpx.HTTPError as exc:
                return (type(exc).__name__, None, time.monotonic() - t0)
            return (r.status_code, r.headers.get("retry-after"), time.monotonic() - t0)

        return await asyncio.gather(*(read(i) for i in range(400)))
