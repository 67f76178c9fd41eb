"""Units of work: every read and write of reviewqueue runs in a :class:`Tx`.

Three ways in, and one rule for each:

- :func:`write` is a write transaction, committed when the block ends and rolled back
  if it raises. **Inside a group (:func:`group`) it is a savepoint of the group's
  transaction instead** (``tx.grouped`` says so): an error undoes that block alone, and
  the block commits with the group. Nothing else opens a write transaction, so no code
  can wait on a lock its own thread holds.
- :func:`group` is one write transaction shared by every :func:`write` that runs inside
  it on this thread, committed once: group commit (``groupcommit.py``).
- :func:`read` is a read-only transaction that never waits for writers.

SQLite: Python's sqlite3 driver begins a transaction lazily, at the first write, so
"read the next pending item, then mark it claimed" would read outside any lock and two
reviewers could claim the same item (measured: over a third of items handed out twice).
Every write transaction therefore begins ``BEGIN IMMEDIATE`` (``engine.py``), which takes
SQLite's single write lock up front. Writers of this machine also queue on a gate
(:class:`_WriteGate`) before they reach SQLite. Reads begin ``DEFERRED`` (WAL snapshot).

PostgreSQL: row locks (``FOR UPDATE [SKIP LOCKED]``, in ``queries.py``) do that job.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlmodel import Session

from .. import clock
from ..errors import DatabaseBusy, DatabaseUnreachable, PoolExhausted
from .engine import _engines_lock, get_engine, sync_clock

log = logging.getLogger("reviewqueue.store")


class Tx:
    """One unit of work on one connection.

    Named queries (``queries.py``) run on the driver's own connection
    (``query.rows(tx, ...)``); ``tx.session`` is an ORM session and ``tx.execute`` runs
    a SQLAlchemy Core statement, both on the same connection and transaction (for the
    admin paths: queues, users, tokens). All of it commits or rolls back together.

    Why the transaction is driven on the driver connection, with SQLAlchemy's
    ``Connection`` made only when ``tx.conn`` is first used: a SQLAlchemy ``Connection``
    and its transaction cost ~20 us a unit of work here (events, execution options,
    reset on return), against ~5 us for the pool checkout and ``BEGIN``/``COMMIT`` on the
    driver; a claim and a decision are two units each well under 150 us of SQLite work.
    """

    __slots__ = (
        "engine",
        "dialect",
        "driver",
        "grouped",
        "_proxied",
        "_conn",
        "_session",
        "_cursor",
        "_root",
    )

    def __init__(self, engine: Engine, proxied, *, grouped: bool = False, root: Tx | None = None):
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self._proxied = proxied  # the pool's connection (PoolProxiedConnection)
        #: The DBAPI connection (sqlite3 or psycopg).
        self.driver = proxied.driver_connection
        #: True when this unit of work is a savepoint inside a group's transaction.
        self.grouped = grouped
        self._root = root  # the group's unit of work, which owns the connection
        self._conn: Connection | None = None
        self._session: Session | None = None
        self._cursor = None

    @property
    def conn(self) -> Connection:
        """A SQLAlchemy ``Connection`` in this unit's transaction (made on first use)."""
        if self._root is not None:
            return self._root.conn
        if self._conn is None:
            # The driver's transaction is open already; the Connection takes over the
            # pool connection and joins it (engine.py's begin hook sees it open and does
            # not BEGIN again). The unit of work then commits through the Connection.
            self._conn = Connection(self.engine, connection=self._proxied)
            self._conn.begin()
        return self._conn

    @property
    def session(self) -> Session:
        if self._session is None:
            # The session works in a savepoint of its own inside the connection's
            # transaction: an ORM error (a failed flush) undoes the session's work only,
            # never the rest of the transaction (which, in a group, is other callers'
            # work). The block around it commits. expire_on_commit=False keeps returned
            # objects readable after the block.
            self._session = Session(
                bind=self.conn,
                expire_on_commit=False,
                autoflush=True,
                join_transaction_mode="create_savepoint",
            )
        return self._session

    def execute(self, statement, params: Any = None):
        """A SQLAlchemy Core statement (flushing the ORM session first)."""
        if self._session is not None:
            self._session.flush()
        return self.conn.execute(statement, params)

    def cursor(self):
        """The driver's cursor on this connection (for ``queries.Query``), kept for the
        unit's life: a statement fetches all of its rows before the next one runs."""
        if self._session is not None:
            self._session.flush()
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = self.driver.cursor()
        return cursor

    def _finish(self) -> None:
        if self._session is not None:
            self._session.commit()  # releases the session's savepoint; the transaction goes on

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


class _WriteGate:
    """Queues this machine's SQLite writers before they reach SQLite.

    SQLite has one writer at a time anyway, but a writer that finds the lock taken
    sleeps in SQLite's busy handler (1, 2, 5, 10 ... 100 ms) and polls. Under load that
    turned a ~1 ms transaction into tens of milliseconds. Threads of this process queue
    on a lock, and processes (API workers, the UI) on an flock of ``<db>.writelock``;
    both hand over at once when released.
    """

    def __init__(self, path: str | None):
        self._lock = threading.RLock()
        self._depth = 0
        self._fd = os.open(path + ".writelock", os.O_RDWR | os.O_CREAT, 0o600) if path else None

    def __enter__(self):
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


_gates: dict[str, _WriteGate] = {}
_gate_of_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _write_gate(engine: Engine) -> _WriteGate:
    # Resolving the path showed up in profiles of busy writers: remember each engine's gate.
    gate = _gate_of_engine.get(engine)
    if gate is None:
        db = engine.url.database
        key = str(Path(db).resolve()) if db and db != ":memory:" else f"memory:{id(engine)}"
        with _engines_lock:  # one gate per database file, shared by its engines in this process
            gate = _gates.get(key)
            if gate is None:
                gate = _gates[key] = _WriteGate(None if key.startswith("memory:") else key)
        _gate_of_engine[engine] = gate
    return gate


class _Group:
    __slots__ = ("engine", "tx")

    def __init__(self, engine: Engine, tx: Tx):
        self.engine, self.tx = engine, tx


#: The group transaction this thread is running, if any (see :func:`group`).
_group: ContextVar[_Group | None] = ContextVar("reviewqueue_group", default=None)


@contextmanager
def write(engine: Engine | None = None) -> Iterator[Tx]:
    """A write transaction, or a savepoint when this thread runs a :func:`group` on
    ``engine`` (see the module docstring). Raises ``DatabaseBusy`` when SQLite's write
    lock stays taken past the busy timeout (another process holding it)."""
    engine = engine or get_engine()
    group = _group.get()
    if group is not None and group.engine is engine:
        yield from _savepoint(group)
        return
    if engine.dialect.name != "sqlite":
        yield from _transaction(engine, None)
        return
    try:
        with _write_gate(engine):
            yield from _transaction(engine, "BEGIN IMMEDIATE")
    except (OperationalError, sqlite3.OperationalError) as exc:
        message = str(getattr(exc, "orig", exc))
        if "locked" not in message and "busy" not in message:
            raise
        raise DatabaseBusy(
            "the database is busy: another process held its write lock too long; "
            "nothing was written, try again"
        ) from exc


#: When the request being served must have its database connection by (monotonic
#: seconds), set by the HTTP API for each request (api/limits.py); none elsewhere.
request_deadline: ContextVar[float | None] = ContextVar("reviewqueue_request_deadline", default=None)


def _checkout(engine: Engine):
    """A pooled connection, or a 503-class error that says why there is none: never a
    wait longer than ``REVIEWQUEUE_DB_POOL_TIMEOUT``, never a 500."""
    deadline = request_deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        # The request queued for a worker thread that long already: answering it now
        # would only add to the pile (400 readers behind a 20 s lock, say).
        raise PoolExhausted(
            "the server is busy: no database connection came free in time; nothing was done, try again"
        )
    try:
        return engine.raw_connection()
    except SATimeoutError:
        raise PoolExhausted(
            "the server is busy: no database connection came free in time; nothing was done, try again"
        ) from None
    except (OperationalError, InterfaceError) as exc:
        log.warning("cannot connect to the database: %s", str(getattr(exc, "orig", exc)).strip())
        raise DatabaseUnreachable(
            "the database did not accept a connection (down, or at its connection limit); try again"
        ) from None


def _transaction(engine: Engine, begin: str | None, *, commit: bool = True) -> Iterator[Tx]:
    """A unit of work in a transaction of its own on a connection from the pool.

    ``begin`` is SQLite's BEGIN statement; psycopg begins a transaction by itself at the
    first statement. A read (``commit=False``) is rolled back at the end."""
    proxied = _checkout(engine)
    tx = None
    pin = None
    try:
        if begin is not None:
            proxied.driver_connection.execute(begin)
        else:
            if clock.sync_due():
                sync_clock(proxied.driver_connection)
            if commit:
                # A write begins here, and everything it stamps is its start on the
                # database's clock (clock.pinned): one round trip, shared by a group.
                driver = proxied.driver_connection
                moment = driver.execute("SELECT transaction_timestamp()").fetchone()[0]
                pin = clock._pinned.set(moment)
        tx = Tx(engine, proxied)
        try:
            yield tx
            tx._finish()
        finally:
            tx._close()
            if pin is not None:
                clock._pinned.reset(pin)
                pin = None
        if tx._conn is not None:
            tx._conn.commit() if commit else tx._conn.rollback()
        elif commit:
            tx.driver.commit()
        else:
            tx.driver.rollback()
    except BaseException:
        if pin is not None:
            clock._pinned.reset(pin)
        try:
            if tx is not None and tx._conn is not None:
                tx._conn.rollback()
            else:
                proxied.driver_connection.rollback()
        except Exception:  # the connection broke: never hand it out again
            if tx is None or tx._conn is None:
                proxied.invalidate()
        raise
    finally:
        if tx is not None and tx._conn is not None:
            tx._conn.close()  # returns the pool connection it took over
        else:
            proxied.close()


def _unit(root: Tx) -> Iterator[Tx]:
    tx = Tx(root.engine, root._proxied, grouped=True, root=root)
    try:
        yield tx
        tx._finish()
    finally:
        tx._close()


def _savepoint(group: _Group) -> Iterator[Tx]:
    # A savepoint on the driver's connection: SQLAlchemy's begin_nested() cost ~0.2 ms
    # per operation here, most of a grouped claim's own time. Nested blocks reuse the
    # name; both databases release and roll back the innermost one.
    driver = group.tx.driver
    driver.execute("SAVEPOINT rq_write")
    try:
        yield from _unit(group.tx)
    except BaseException:
        driver.execute("ROLLBACK TO SAVEPOINT rq_write")
        driver.execute("RELEASE SAVEPOINT rq_write")
        raise
    driver.execute("RELEASE SAVEPOINT rq_write")


@contextmanager
def group(engine: Engine | None = None) -> Iterator[Tx]:
    """One write transaction shared by every :func:`write` run inside it on this thread
    (each a savepoint), committed once at the end: a group commit."""
    engine = engine or get_engine()
    with write(engine) as tx:
        token = _group.set(_Group(engine, tx))
        try:
            yield tx
        finally:
            _group.reset(token)


@contextmanager
def read(engine: Engine | None = None) -> Iterator[Tx]:
    """A read-only transaction that never waits for writers (rolled back at the end)."""
    engine = engine or get_engine()
    yield from _transaction(
        engine, "BEGIN DEFERRED" if engine.dialect.name == "sqlite" else None, commit=False
    )
