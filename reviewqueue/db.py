"""Engines, transactions and schema migrations for SQLite and PostgreSQL.

Transactions on SQLite: Python's sqlite3 driver begins a transaction lazily, at the
first write. A "read the next pending item, then mark it claimed" sequence therefore
reads outside any lock, and two reviewers can claim the same item (measured here:
over a third of items handed out twice). We take transaction control from the driver
(the recipe in SQLAlchemy's pysqlite docs) and begin every write transaction with
``BEGIN IMMEDIATE``, which takes SQLite's single write lock up front, so a read
followed by a write inside :func:`transaction` is serialised against every other
writer. Read-only work uses :func:`reading`, which begins ``DEFERRED`` and so never
waits for writers (WAL readers see a snapshot).

On PostgreSQL, row locks (``FOR UPDATE [SKIP LOCKED]``) in the domain code do that job.
"""

from __future__ import annotations

import json
import operator
import threading
import time
import weakref
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from .settings import get_settings

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _json_dumps(value) -> str:
    # ensure_ascii=False keeps non-ASCII text searchable as itself on SQLite.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def normalise_url(url: str) -> str:
    """Accept the URL spellings people paste and pick the psycopg 3 driver for PostgreSQL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool: bool = True) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_json_dumps,
            # Room for the API's thread pool: connections beyond the pool are closed
            # when returned, and opening one (with its PRAGMAs) costs more than a read.
            **({"pool_size": 20, "max_overflow": 20} if pool else {"poolclass": NullPool}),
        )
        _configure_sqlite(engine)
        if pool and parsed.database and parsed.database != ":memory:":
            _start_checkpointer(engine, parsed.database)
        return engine
    kwargs = {"pool_size": 10, "max_overflow": 20} if pool else {"poolclass": NullPool}
    return create_engine(url, json_serializer=_json_dumps, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see module doc
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against application crashes; a power cut can
        # lose the last transactions but never corrupts the database.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Checkpoints run in the background (see _start_checkpointer); the inline
        # auto-checkpoint only bounds the WAL (80 MB) when nothing else checkpoints.
        cur.execute("PRAGMA wal_autocheckpoint=20000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # On the driver: exec_driver_sql's execution context cost ~25 us a transaction.
        conn.connection.driver_connection.execute(f"BEGIN {mode}")


def _start_checkpointer(engine: Engine, path: str) -> None:
    """Checkpoint the WAL from a background thread, twice a second.

    By default the commit that pushes the WAL past 1,000 pages checkpoints inline, and
    that reviewer waits: measured here, it set claim+decide p99 at ~10 ms against a
    p50 of ~2 ms; checkpointing off the request path brought p99 to ~2.5 ms. A
    PASSIVE checkpoint never blocks readers or writers.
    """
    import sqlite3
    import weakref

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


_disposed: weakref.WeakSet = weakref.WeakSet()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: ``REVIEWQUEUE_DATABASE_URL``)."""
    url = normalise_url(url or get_settings().database_url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            _disposed.add(engine)
            engine.dispose()
        _engines.clear()


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
        self._fd = None
        if path:
            import os

            self._fd = os.open(path + ".writelock", os.O_RDWR | os.O_CREAT, 0o644)

    def __enter__(self):
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1 and self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


_write_gates: dict[str, _WriteGate] = {}


_gate_of_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _write_lock(engine: Engine) -> _WriteGate:
    # Resolving the path showed up in profiles of busy writers: remember each engine's gate.
    gate = _gate_of_engine.get(engine)
    if gate is None:
        gate = _gate_of_engine[engine] = _gate_for_file(engine)
    return gate


def _gate_for_file(engine: Engine) -> _WriteGate:
    # One gate per database file, shared by every engine on it in this process.
    db = engine.url.database
    key = str(Path(db).resolve()) if db and db != ":memory:" else f"memory:{id(engine)}"
    with _engines_lock:
        gate = _write_gates.get(key)
        if gate is None:
            gate = _write_gates[key] = _WriteGate(key if not key.startswith("memory:") else None)
        return gate


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A write transaction: committed when the block ends, rolled back on error."""
    engine = engine or get_engine()
    if is_sqlite(engine):
        with _write_lock(engine), Session(engine, expire_on_commit=False) as session:
            with session.begin():
                yield session
        return
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


#: The shared transaction of a group commit (see :func:`group_transaction`), if the
#: current thread is running one.
_group: ContextVar[tuple[Engine, Connection] | None] = ContextVar("reviewqueue_group", default=None)


@contextmanager
def writing(engine: Engine | None = None) -> Iterator[Connection]:
    """A write transaction on a bare Core connection, for the hot paths (claim,
    decide) where ORM bookkeeping would cost more than the database work.

    Inside :func:`group_transaction` it is a savepoint of the group's transaction
    instead: an error undoes this block's writes only, and everything commits together.
    """
    engine = engine or get_engine()
    group = _group.get()
    if group is not None and group[0] is engine:
        # A savepoint on the driver's connection: SQLAlchemy's begin_nested() cost
        # ~0.2 ms per operation here, most of a grouped claim's own time. Nested blocks
        # reuse the name; both databases release and roll back the innermost one.
        conn = group[1]
        driver = conn.connection.driver_connection
        driver.execute("SAVEPOINT rq_write")
        try:
            yield conn
        except BaseException:
            driver.execute("ROLLBACK TO SAVEPOINT rq_write")
            driver.execute("RELEASE SAVEPOINT rq_write")
            raise
        driver.execute("RELEASE SAVEPOINT rq_write")
        return
    if is_sqlite(engine):
        with _write_lock(engine), engine.begin() as conn:
            yield conn
        return
    with engine.begin() as conn:
        yield conn


def in_group(engine: Engine) -> bool:
    """Whether this thread is inside a :func:`group_transaction` on ``engine``."""
    group = _group.get()
    return group is not None and group[0] is engine


@contextmanager
def group_transaction(engine: Engine | None = None) -> Iterator[Connection]:
    """One write transaction shared by every :func:`writing` block run inside it on
    this thread (each as a savepoint), committed once at the end: a group commit.
    Only for work that writes through :func:`writing`."""
    engine = engine or get_engine()
    with writing(engine) as conn:
        token = _group.set((engine, conn))
        try:
            yield conn
        finally:
            _group.reset(token)


@contextmanager
def reading(engine: Engine | None = None) -> Iterator[Session]:
    """A read-only transaction that never waits for writers."""
    engine = engine or get_engine()
    with Session(engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def read_conn(engine: Engine | None = None) -> Iterator[Connection]:
    """A read-only Core connection (no ORM) that never waits for writers."""
    engine = engine or get_engine()
    with engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        yield conn


def stream_tuples(engine: Engine, stmt, params: dict, *, size: int) -> Iterator[list[tuple]]:
    """Run a Core SELECT on the driver's own cursor and yield lists of up to ``size``
    plain tuples: a server-side cursor on PostgreSQL, SQLite's lazy cursor otherwise.

    For bulk reads (exports) whose columns are already text and numbers: building a
    SQLAlchemy Row per row cost more than the query itself.
    """
    dialect = engine.dialect
    compiled = stmt.compile(dialect=dialect)
    state = compiled.construct_expanded_state(params)
    # The column types' bind processors (datetimes to SQLite's stored text, say), as
    # SQLAlchemy would apply them; state.processors covers only expanded IN lists.
    processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                  for name, bind in compiled.binds.items()}
    processors.update(state.processors)
    values = {name: processors[name](v) if processors.get(name) else v for name, v in state.parameters.items()}
    args = tuple(values[name] for name in state.positiontup) if dialect.positional else values
    with read_conn(engine) as conn:
        driver = conn.connection.driver_connection
        cursor = driver.cursor() if is_sqlite(engine) else driver.cursor(name="rq_stream")
        try:
            cursor.execute(state.statement, args)
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            cursor.close()


def _tuple_getter(names):
    """``values -> tuple(values[n] for n in names)``, for positional drivers (sqlite3),
    without a generator per call."""
    if len(names) == 1:
        key = names[0]
        return lambda values: (values[key],)
    return operator.itemgetter(*names) if names else (lambda values: ())


class Prepared:
    """A Core statement compiled once per dialect and run on the driver's own cursor,
    inside whatever transaction the SQLAlchemy connection is in.

    For the claim and decision hot paths: SQLAlchemy's per-execute work (cache key,
    parameter construction, execution context, result wrapping) cost ~60 us a
    statement here, several times the statement itself, and it ran inside SQLite's
    write lock, which every API worker waits for. The SQL, the bind processors and the
    result processors are SQLAlchemy's own, so values go in and come out exactly as
    ``conn.execute`` would give them. Rows are named tuples (``row.id``, ``row._asdict()``).
    Statements with expanding (``IN``) parameters are not supported. It reads compiled-
    statement internals of SQLAlchemy 2.x (pinned below 2.2); ``tests/test_prepared.py``
    compares it with ``conn.execute`` on both databases.
    """

    def __init__(self, stmt, *, keys: list[str] | None = None):
        self.stmt = stmt
        self.keys = keys  # an INSERT's columns, in the order of its values
        self._by_dialect: dict[tuple, tuple] = {}

    def _prepare(self, dialect) -> tuple:
        compiled = self.stmt.compile(dialect=dialect, column_keys=self.keys)
        defaults = compiled.construct_params(_check=False)
        binds = {name: proc for name, proc in compiled._bind_processors.items() if proc is not None}
        names = _tuple_getter(compiled.positiontup) if dialect.positional else None
        columns = compiled._result_columns
        # [row class, column types, processors (from the first result's description)]
        row = [namedtuple("Row", [col[0] for col in columns]), [col[3] for col in columns], None] if columns else None
        prepared = (compiled.string, defaults, binds, names, row)
        self._by_dialect[(dialect.name, dialect.driver)] = prepared
        return prepared

    @staticmethod
    def _converters(dialect, types: list, description) -> list:
        # Some result processors depend on the driver's column type (psycopg's numeric OIDs).
        procs = [t._cached_result_processor(dialect, d[1]) for t, d in zip(types, description, strict=True)]
        return [(i, proc) for i, proc in enumerate(procs) if proc is not None]

    def rows(self, conn: Connection, params: dict | None = None) -> list:
        """Run it with ``params`` (bind names as in the statement); the returned rows."""
        dialect = conn.dialect
        prepared = self._by_dialect.get((dialect.name, dialect.driver)) or self._prepare(dialect)
        sql, defaults, binds, names, row = prepared
        values = {**defaults, **params} if params else dict(defaults)
        for name, proc in binds.items():
            values[name] = proc(values[name])
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(sql, names(values) if names is not None else values)
            if row is None:
                return []
            make, types, convert = row
            if convert is None:
                convert = row[2] = self._converters(dialect, types, cursor.description)
            out = []
            for raw in cursor.fetchall():
                if convert:
                    raw = list(raw)
                    for i, proc in convert:
                        raw[i] = proc(raw[i])
                out.append(make(*raw))
            return out
        finally:
            cursor.close()

    def first(self, conn: Connection, params: dict | None = None):
        rows = self.rows(conn, params)
        return rows[0] if rows else None

    def run(self, conn: Connection, params: dict | None = None) -> None:
        self.rows(conn, params)


def pg_settled_before(engine: Engine, now):
    """PostgreSQL: a moment before which every write has committed, given ``now``.

    Writers stamp their rows (``updated_at``, ``decided_at``) inside their transaction,
    after its first statement, so a transaction still open cannot stamp a time earlier
    than its own start: the bound is the oldest open transaction's start (or ``now``),
    less a second for clock skew between this host and the database's. On SQLite there
    is no such gap: writers take turns and stamp under the write lock.
    """
    with read_conn(engine) as conn:
        oldest = conn.execute(text(
            "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
            "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )).scalar()
    bound = min(now, oldest) if oldest is not None else now
    return bound - timedelta(seconds=1)


def ping(engine: Engine | None = None) -> None:
    with read_conn(engine) as conn:
        conn.execute(text("SELECT 1"))


# --- migrations -------------------------------------------------------------------

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", (engine.url if engine else make_url(get_settings().database_url))
                        .render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Bring the schema up to date. Safe to call from several processes at once."""
    from alembic import command

    engine = engine or get_engine()
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = engine or get_engine()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
