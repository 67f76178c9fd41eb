"""Bulk reads as plain tuples, and the moment before which every write has committed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from .engine import is_sqlite
from .sql import time_param
from .transactions import read


def stream_tuples(engine: Engine, statement, params: dict[str, Any], *, size: int) -> Iterator[list[tuple]]:
    """Run a Core SELECT on the driver's own cursor and yield lists of up to ``size``
    plain tuples: a server-side cursor on PostgreSQL, SQLite's lazy cursor otherwise.

    For bulk reads (exports) whose columns the database has already shaped as text and
    numbers: building a SQLAlchemy Row per row cost more than the query itself. The
    statement is compiled with SQLAlchemy's public compiler (``string``, ``params``,
    ``positiontup``); its parameters must be plain values or timestamps (no expanding
    ``IN``: give one bind per value).
    """
    compiled = statement.compile(dialect=engine.dialect)
    dialect = engine.dialect.name
    values = {
        name: time_param(dialect, v) if isinstance(v, datetime) else v
        for name, v in {**compiled.params, **params}.items()
    }
    args = (
        tuple(values[name] for name in compiled.positiontup) if compiled.positiontup is not None else values
    )
    with read(engine) as tx:
        driver = tx.driver
        cursor = driver.cursor() if is_sqlite(engine) else driver.cursor(name="rq_stream")
        try:
            cursor.execute(compiled.string, args)
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            cursor.close()


def settled_before(engine: Engine, now: datetime) -> datetime:
    """PostgreSQL: a moment before which every write has committed, given ``now``.

    Writers stamp their rows (``updated_at``, ``decided_at``, ``events.at``) inside their
    transaction, after its first statement, so a transaction still open cannot stamp a
    time earlier than its own start: the bound is the oldest open transaction's start
    (or ``now``), less a second for clock skew between this host and the database's. On
    SQLite there is no such gap: writers take turns and stamp under the write lock.
    """
    with read(engine) as tx:
        oldest = tx.execute(
            text(
                "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
                "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
            )
        ).scalar()
    bound = min(now, oldest) if oldest is not None else now
    return bound - timedelta(seconds=1)


def ping(engine: Engine) -> None:
    with read(engine) as tx:
        tx.execute(text("SELECT 1"))
