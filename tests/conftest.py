"""Shared fixtures. Every test that takes ``engine`` runs on SQLite and, when
``REVIEWQUEUE_TEST_POSTGRES_URL`` is set, on PostgreSQL too."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from reviewqueue import queues, store, tokens, users
from reviewqueue.settings import get_settings

from .chromium import CHROMIUM, CHROMIUM_ARGS

PG_URL = os.environ.get("REVIEWQUEUE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


#: The files that take a minute or more (``scripts/test`` prints the slowest tests),
#: longest first. They start first, so the short files fill the workers' last minutes;
#: started last, one of them ran alone for two minutes at the end of the suite.
LONG_FIRST = (
    "test_api_fuzz.py",
    "test_browser.py",
    "test_quality_coverage.py",
    "test_deadline_load.py",
    "test_nodes.py",
    "test_export.py",
    "test_pool.py",
)


def pytest_collection_modifyitems(items):
    """Long files first; the rest keep pytest-randomly's shuffled order (a stable sort).
    Needs xdist's ``--no-loadscope-reorder``, which scripts/test passes: by default xdist
    sends files with many tests first, whatever their length."""
    rank = {name: n for n, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


#: The hasher the product ships with (reviewqueue.users), before _quick_password_hashes.
PRODUCTION_HASHER = users._hasher


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    """argon2id at the product's cost (64 MiB, 3 passes, 4 lanes) takes 0.1-0.25 s a hash
    on two cores, and the suite hashes hundreds of passwords. Tests in this process hash
    with the same algorithm and code at a small cost; processes the tests start (API
    nodes, the review app) use the product's, and test_security checks its parameters."""
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users._dummy_hash.cache_clear()
    yield
    users._dummy_hash.cache_clear()


@pytest.fixture(autouse=True)
def _keep_the_main_module():
    """Streamlit's AppTest runs its script as ``__main__`` and leaves it there; a later
    test of the process that starts a ``multiprocessing`` child would then re-run that
    script in the child. Put the real one back after every test."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = store.make_engine(f"sqlite:///{path}", pool=False)
    store.upgrade(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


def _worker_database(url: str) -> str:
    """Under pytest-xdist each worker gets its own database, made fresh."""
    from sqlalchemy.engine import make_url

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    admin = store.make_engine(url, pool=False).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_migrated():
    if not PG_URL:
        return None
    url = _worker_database(store.normalise_url(PG_URL))
    engine = store.make_engine(url, pool=False)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    store.upgrade(engine)
    engine.dispose()
    return url


def _truncate_pg(url: str) -> None:
    # A throwaway engine: the test's own engine is made after its settings are.
    engine = store.make_engine(url, pool=False)
    try:
        with engine.begin() as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ]
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    finally:
        store.dispose(engine)


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        path = tmp_path / "reviewqueue.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_migrated")
        _truncate_pg(url)
    monkeypatch.setenv("REVIEWQUEUE_DATABASE_URL", url)
    monkeypatch.setenv("REVIEWQUEUE_EXPORT_DIR", str(tmp_path / "exports"))
    # Each test's database is new: so are its server key and the file anchoring its audit
    # seals (absolute paths: some tests change the working folder).
    monkeypatch.setenv("REVIEWQUEUE_AUDIT_ANCHOR_FILE", str(tmp_path / "audit-anchor.log"))
    monkeypatch.setenv("REVIEWQUEUE_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    # Tests read their own writes: no cached counts (tests/test_cache.py covers the cache).
    monkeypatch.setenv("REVIEWQUEUE_COUNTS_MAX_AGE", "0")
    get_settings.cache_clear()
    users.reset_rate_limits()
    tokens._touched.clear()
    tokens.forget_recent()
    yield url
    store.dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def engine(db_url):
    return store.get_engine(db_url)


@pytest.fixture
def queue(engine):
    """A plain free-text queue: threshold 0.8, no audit sample."""
    return queues.create("support", {"threshold": 0.8, "audit_rate": 0.0, "lease_seconds": 60}, engine=engine)


@pytest.fixture
def label_queue(engine):
    return queues.create(
        "tickets",
        {
            "threshold": 0.7,
            "audit_rate": 0.0,
            "labels": ["billing", "bug", "other"],
            "label_thresholds": {"billing": 0.9},
            "reject_reasons": ["ambiguous", "spam"],
        },
        engine=engine,
    )


def item(i: int = 0, **over):
    base = {
        "queue": "support",
        "input": f"question {i}",
        "output": f"answer {i}",
        "confidence": 0.5,
        "external_id": f"ext-{i}",
    }
    base.update(over)
    return base


class Clock:
    """Patchable time: ``clock.advance(seconds)``."""

    def __init__(self, monkeypatch):
        from reviewqueue import clock as real

        self._offset = 0.0
        self._real_now = real.now
        monkeypatch.setattr(real, "now", self.now)

    def now(self):
        from datetime import timedelta

        return self._real_now() + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def set(self, moment) -> None:
        """Jump to an absolute (aware) moment; time goes on from there."""
        self._offset = (moment - self._real_now()).total_seconds()


@pytest.fixture
def fake_clock(monkeypatch):
    return Clock(monkeypatch)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api(db_url, engine):
    """The API in-process (FastAPI's TestClient), lifespan included."""
    from fastapi.testclient import TestClient

    from reviewqueue.api.app import create_app

    with TestClient(create_app(db_url, background=False), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def make_token(engine):
    from reviewqueue import tokens, users

    def make(scope: str, *, queues=None, user=None, name=None, expires_in=None):
        if scope == "review" and user is None:
            user = "rita"
        if scope == "admin" and user == "rita":
            user = "adam"  # an admin token acts as an admin: a reviewer's would administer nothing
        if user and users.get(user, engine=engine) is None:
            role = "admin" if scope == "admin" else "reviewer"
            users.add(user, role=role, password="password-123", engine=engine)
        _, plaintext = tokens.create(
            name or f"{scope}-{len(tokens.all_tokens(engine=engine))}",
            scope,
            queues=queues,
            user=user,
            expires_in=expires_in,
            engine=engine,
        )
        return {"Authorization": f"Bearer {plaintext}"}

    return make


@pytest.fixture
def live_server(db_url, engine):
    """The API on a real port (uvicorn in a thread): for concurrency and the client."""
    import threading
    import time

    import uvicorn

    from reviewqueue.api.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(db_url, background=False), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through playwright, for one test module at a time.

    Playwright's sync API keeps an asyncio event loop running in the main thread while
    it is started, which breaks any other test of the process that calls
    ``asyncio.run``; so it lives only as long as the module that uses it (pytest keeps a
    module's tests together in any order, shuffled or not)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def streamlit_app(database_url: str, *, port: int | None = None, cwd=None):
    """The review app as users start it (``streamlit run review_app.py``) on a free
    port; yields its base URL once it answers its health check, stops it after."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    root = Path(__file__).parent.parent
    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(root / "review_app.py"),
            "--server.headless=true",
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            "--browser.gatherUsageStats=false",
        ],
        cwd=cwd or root,
        env={**os.environ, "REVIEWQUEUE_DATABASE_URL": database_url},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/_stcore/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "streamlit did not start"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


class LocalServer:
    """A throwaway HTTP server on 127.0.0.1 for tests (webhook receiver, request
    recorder, OIDC provider): ``handler`` is a BaseHTTPRequestHandler subclass whose
    ``server.owner`` is this object. Use as a context manager, or ``start``/``close``."""

    def __init__(self, handler, port: int | None = None):
        import threading
        from http.server import ThreadingHTTPServer

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.owner = self
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def quiet_handler():
    """A request handler base that does not log to stderr."""
    from http.server import BaseHTTPRequestHandler

    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return None

    return Quiet


def seal_now(engine):
    """``audit.seal``, waiting while another test's long write transaction holds the
    bound back (on PostgreSQL it is the oldest one running anywhere on the server)."""
    import time

    from reviewqueue import audit

    deadline = time.monotonic() + 60
    while True:
        sealed = audit.seal(engine=engine)
        if sealed is not None or time.monotonic() > deadline:
            return sealed
        time.sleep(0.2)
