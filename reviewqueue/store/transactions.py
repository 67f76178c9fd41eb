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
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from ..errors import DatabaseBusy
from .engine import _engines_lock, get_engine, is_sqlite


class Tx:
    """One unit of work on one connection.

    ``tx.session`` is an ORM session on the same connection (for the admin paths:
    queues, users, tokens); ``tx.execute`` runs a SQLAlchemy Core statement; named
    queries (``queries.py``) run with ``query.rows(tx, ...)``. All of it commits or
    rolls back together.
    """

    __slots__ = ("conn", "engine", "grouped", "_session")

    def __init__(self, conn: Connection, engine: Engine, *, grouped: bool = False):
        self.conn = conn
        self.engine = engine
        #: True when this unit of work is a savepoint inside a group's transaction.
        self.grouped = grouped
        self._session: Session | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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
        """The driver's own cursor on this connection (for ``queries.Query``)."""
        if self._session is not None:
            self._session.flush()
        return self.conn.connection.driver_connection.cursor()

    def _finish(self) -> None:
        if self._session is not None:
            self._session.commit()  # releases the session's savepoint; the transaction goes on

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


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
        self._fd = os.open(path + ".writelock", os.O_RDWR | os.O_CREAT, 0o644) if path else None

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
    __slots__ = ("engine", "conn")

    def __init__(self, engine: Engine, conn: Connection):
        self.engine, self.conn = engine, conn


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
    if not is_sqlite(engine):
        with engine.begin() as conn:
            yield from _unit(conn, engine)
        return
    try:
        with _write_gate(engine), engine.begin() as conn:
            yield from _unit(conn, engine)
    except OperationalError as exc:
        if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
            raise
        raise DatabaseBusy(
            "the database is busy: another process held its write lock too long; "
            "nothing was written, try again"
        ) from exc


def _unit(conn: Connection, engine: Engine, grouped: bool = False) -> Iterator[Tx]:
    tx = Tx(conn, engine, grouped=grouped)
    try:
        yield tx
        tx._finish()
    finally:
        tx._close()


def _savepoint(group: _Group) -> Iterator[Tx]:
    # A savepoint on the driver's connection: SQLAlchemy's begin_nested() cost ~0.2 ms
    # per operation here, most of a grouped claim's own time. Nested blocks reuse the
    # name; both databases release and roll back the innermost one.
    driver = group.conn.connection.driver_connection
    driver.execute("SAVEPOINT rq_write")
    try:
        yield from _unit(group.conn, group.engine, grouped=True)
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
        token = _group.set(_Group(engine, tx.conn))
        try:
            yield tx
        finally:
            _group.reset(token)


@contextmanager
def read(engine: Engine | None = None) -> Iterator[Tx]:
    """A read-only transaction that never waits for writers (rolled back at the end)."""
    engine = engine or get_engine()
    with engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        yield from _unit(conn, engine)
