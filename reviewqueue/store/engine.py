"""Engines for SQLite and PostgreSQL, each carrying the settings it was made with.

SQLite is configured for many readers and one writer at a time: WAL, ``synchronous=NORMAL``
(durable against application crashes), and transaction control taken from the driver so
that every write transaction begins ``BEGIN IMMEDIATE`` (see ``transactions.py`` for why).
A background thread checkpoints the WAL, so no reviewer's commit pays for a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from .. import clock
from ..settings import Settings, get_settings

log = logging.getLogger("reviewqueue.store")

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
#: The settings each engine was made with (``settings_of``).
_settings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_disposed: weakref.WeakSet = weakref.WeakSet()


def json_dumps(value) -> str:
    """The one JSON encoding of stored values. ``ensure_ascii=False`` keeps non-ASCII
    text searchable as itself on SQLite; NaN and infinity are not JSON."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def normalise_url(url: str) -> str:
    """Accept the URL spellings people paste and pick the psycopg 3 driver for PostgreSQL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def settings_of(engine: Engine) -> Settings:
    """The settings ``engine`` was made with (the process's settings when none were given)."""
    return _settings.get(engine) or get_settings()


def make_engine(url: str, *, pool: bool = True, settings: Settings | None = None) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    limits = settings or get_settings()
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Readable by this account only (SQLite would make it 0644, and its -wal and
            # -shm files take the database file's mode).
            os.close(os.open(parsed.database, os.O_RDWR | os.O_CREAT, 0o600))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=json_dumps,
            # Room for the API's thread pool: connections beyond the pool are closed
            # when returned, and opening one (with its PRAGMAs) costs more than a read.
            # (A file has no server-side connection limit: REVIEWQUEUE_DB_POOL_SIZE is
            # PostgreSQL's.)
            **(
                {"pool_size": 20, "max_overflow": 20, "pool_timeout": limits.db_pool_timeout}
                if pool
                else {"poolclass": NullPool}
            ),
        )
        _configure_sqlite(engine)
        if pool and parsed.database and parsed.database != ":memory:":
            _start_checkpointer(engine, parsed.database)
    else:
        kwargs = (
            {
                "pool_size": limits.db_pool_size,
                "max_overflow": limits.db_max_overflow,
                "pool_timeout": limits.db_pool_timeout,
            }
            if pool
            else {"poolclass": NullPool}
        )
        # A server that does not answer must not hold a request for libpq's default
        # (forever): it becomes a 503 (transactions.py).
        connect_args = {"connect_timeout": max(2, round(limits.db_pool_timeout))}
        if limits.db_transaction_pooling:
            # Each transaction may run on another server connection: a statement
            # psycopg prepared on one is not on the next ("prepared statement _pg3_2
            # already exists" behind PgBouncer 1.18).
            connect_args["prepare_threshold"] = None
        engine = create_engine(url, json_serializer=json_dumps, connect_args=connect_args, **kwargs)
        _ping_idle_connections(engine)
    if settings is not None:
        _settings[engine] = settings
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (transactions.py)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against application crashes; a power cut can
        # lose the last transactions but never corrupts the database.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed, so what retention and erasure remove
        # is not left in free space of the file (scrub_freed clears the WAL).
        cur.execute("PRAGMA secure_delete=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Checkpoints run in the background (_start_checkpointer); the inline
        # auto-checkpoint only bounds the WAL (80 MB) when nothing else checkpoints.
        cur.execute("PRAGMA wal_autocheckpoint=20000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        driver = conn.connection.driver_connection
        if driver.in_transaction:
            return  # a unit of work began it on the driver (transactions.Tx.conn)
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # On the driver: exec_driver_sql's execution context cost ~25 us a transaction.
        driver.execute(f"BEGIN {mode}")


#: A pooled PostgreSQL connection unused for longer than this is pinged before use.
PING_IDLE_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """Check a PostgreSQL connection that sat idle in the pool before handing it out.

    ``pool_pre_ping`` pings on every checkout: a round trip to the server for each unit
    of work, two of a claim and a decision's ~15. A connection in steady use is alive;
    one that sat idle may have been closed by a server restart or a proxy's idle
    timeout. Raising ``DisconnectionError`` from the checkout makes the pool replace it
    (SQLAlchemy's documented pessimistic recipe); transactions.py discards a connection
    that breaks while in use.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        if record is not None:
            record.info["rq_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        idle_since = record.info.get("rq_idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
            return
        try:
            dbapi_conn.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


def connection_budget(engine: Engine) -> int:
    """The most connections this engine opens (its pool and overflow)."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    return (size() if callable(size) else 1) + max(0, overflow)


def sync_clock(driver) -> None:
    """Take the time from the database server (``driver``: a psycopg connection outside
    any transaction): every timestamp reviewqueue writes on PostgreSQL is then on the
    database's clock, whatever this host's says (clock.py)."""

    def fetch() -> float:
        with driver.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM clock_timestamp())")
            return float(cur.fetchone()[0])

    try:
        clock.sync(fetch)
    except Exception as exc:  # the unit of work finds out for itself
        log.warning("could not read the database's clock: %s", exc)
    finally:
        try:
            driver.rollback()
        except Exception:
            pass


def _start_checkpointer(engine: Engine, path: str) -> None:
    """Checkpoint the WAL from a background thread, twice a second.

    By default the commit that pushes the WAL past 1,000 pages checkpoints inline, and
    that reviewer waits: measured here, it set claim+decide p99 at ~10 ms against a
    p50 of ~2 ms; checkpointing off the request path brought p99 to ~2.5 ms. A
    PASSIVE checkpoint never blocks readers or writers.
    """
    ref = weakref.ref(engine)

    def run() -> None:
        conn = None
        while True:
            time.sleep(0.5)
            alive = ref()
            if alive is None or alive in _disposed:
                break
            del alive
            try:
                conn = conn or sqlite3.connect(path, timeout=1, check_same_thread=False)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # busy or gone: try again next time
        if conn is not None:
            conn.close()

    threading.Thread(target=run, name="reviewqueue-wal-checkpoint", daemon=True).start()


def scrub_freed(engine: Engine, timeout: float = 10.0) -> bool:
    """After content was removed: on SQLite, checkpoint the WAL into the database file
    and truncate it, so no copy of the removed pages is left in the WAL (the database
    file's freed space is zeroed by ``secure_delete``). Whether it was complete (a
    reader holding an old snapshot for longer than ``timeout`` stops it). PostgreSQL
    keeps dead row versions in its files until VACUUM reuses their space."""
    if not is_sqlite(engine) or engine.url.database in (None, "", ":memory:"):
        return True
    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(engine.url.database, timeout=timeout, isolation_level=None)
    try:
        while True:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            if time.monotonic() > deadline:
                log.warning("the WAL of %s could not be truncated: a reader held it", engine.url.database)
                return False
            time.sleep(0.05)
    finally:
        conn.close()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: ``REVIEWQUEUE_DATABASE_URL``)."""
    settings = get_settings()
    url = normalise_url(url or settings.database_url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url, settings=settings)
        return engine


def dispose(engine: Engine) -> None:
    """Close ``engine``'s connections and stop its background work."""
    _disposed.add(engine)
    engine.dispose()


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            dispose(engine)
        _engines.clear()
