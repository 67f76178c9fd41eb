"""Behind PgBouncer in transaction mode (each transaction may run on another server
connection): migrations, concurrent claims and decisions, an export's server-side
cursor, audit sealing and verifying, readiness, and an API node, with
``REVIEWQUEUE_DB_TRANSACTION_POOLING=1`` as docs/deployment.md says."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from reviewqueue import audit, cluster, export, ingest, queues, review, store, tokens, users

from .conftest import PG_URL, _truncate_pg, free_port, seal_now
from .test_nodes import KEY, Node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PG_URL, reason="PgBouncer pools PostgreSQL connections"),
    pytest.mark.skipif(
        not shutil.which("pgbouncer"), reason="needs Debian's pgbouncer (apt-get install pgbouncer)"
    ),
]


@pytest.fixture
def bouncer_url(pg_migrated):
    """PgBouncer in transaction mode in front of the test database; its URL."""
    _truncate_pg(pg_migrated)
    target = make_url(pg_migrated)
    folder = Path(tempfile.mkdtemp(prefix="rq-pgbouncer-"))
    folder.chmod(0o777)  # PgBouncer refuses to run as root: it runs as postgres
    port = free_port()
    (folder / "users.txt").write_text(f'"{target.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={target.host} port={target.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
"""
    )
    for f in folder.iterdir():
        f.chmod(0o666)
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(["pgbouncer", *user, str(folder / "pgbouncer.ini")])
    deadline = time.monotonic() + 20
    while not (folder / "pgbouncer.pid").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "pgbouncer did not start"
        time.sleep(0.1)
    try:
        yield target.set(port=port).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


def test_everything_works_through_pgbouncer_in_transaction_mode(bouncer_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEWQUEUE_DATABASE_URL", bouncer_url)
    monkeypatch.setenv("REVIEWQUEUE_DB_TRANSACTION_POOLING", "1")
    monkeypatch.setenv("REVIEWQUEUE_SECRET_KEY", KEY)
    monkeypatch.setenv("REVIEWQUEUE_AUDIT_ANCHOR_FILE", str(tmp_path / "audit-anchor.log"))
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    engine = store.get_engine(bouncer_url)
    try:
        store.upgrade(engine)
        cluster.check_key(engine=engine)
        queues.create("q", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
        ingest.submit_many(
            [
                {"queue": "q", "input": "i", "output": "o", "confidence": 0.1, "external_id": f"e{i}"}
                for i in range(200)
            ],
            engine=engine,
        )
        errors: list[Exception] = []

        def reviewer(name: str) -> None:
            try:
                for _ in range(40):  # well past psycopg's prepare threshold (5)
                    held = review.claim_next("q", name, engine=engine)
                    if held is None:
                        return
                    review.decide(held.id, name, {"verdict": "approve"}, engine=engine)
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        time.sleep(1.2)  # past the settled bound
        [result] = export.export(tmp_path / "out", fmt="jsonl", engine=engine)
        assert result.rows == 160
        assert seal_now(engine) is not None and audit.verify(engine=engine).ok
        probe = store.Probe(engine)
        for _ in range(3):
            probe.check()
        probe.close()
        # An API node through the pooler.
        users.add("ann", password="password-123", engine=engine)
        _, plain = tokens.create("ann-token", "review", user="ann", engine=engine)
        headers = {"Authorization": f"Bearer {plain}"}
        logs = tmp_path / "logs"
        logs.mkdir()
        node = Node("api", {**os.environ, "RQ_TEST_LOGS": str(logs)})
        try:
            node.wait_ready()
            with httpx.Client(base_url=node.base, headers=headers, timeout=30) as client:
                for _ in range(20):
                    held = client.post("/v1/queues/q/claim")
                    assert held.status_code == 200, held.text
                    r = client.post(f"/v1/items/{held.json()['id']}/decision", json={"verdict": "approve"})
                    assert r.status_code == 200, r.text
                assert client.get("/readyz").status_code == 200
        finally:
            node.signal(signal.SIGTERM)
            node.proc.wait(timeout=30)
    finally:
        store.dispose_engines()
        get_settings.cache_clear()
