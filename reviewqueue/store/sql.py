"""Named SQL statements run on the driver's own cursor, and the one place that knows how
values are stored.

Why not SQLAlchemy's ``conn.execute`` for these: its per-execute work (cache key,
parameters, execution context, result rows) cost ~60 us a statement here, several times
the statement itself, and on SQLite it ran inside the write lock that every API worker
queues for. A :class:`Query` is plain SQL with ``:name`` parameters, written once , turned into each driver's
parameter style once, and run on the cursor. Where the dialects differ, a marker stands
in the SQL (``@skip_locked`` is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and nothing on
SQLite, whose write transactions already hold the one write lock), or the query is
written once per dialect. Values are stored exactly as SQLAlchemy's
column types store them (``tests/test_store.py`` compares the two on both databases):

- timestamps: aware UTC datetimes in Python; ``timestamptz`` on PostgreSQL; on SQLite
  UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's format, which its comparisons use);
- JSON: ``jsonb`` on PostgreSQL, JSON text on SQLite; Python ``None`` is JSON ``null``.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlmodel import SQLModel

from .engine import json_dumps
from .transactions import Tx

# --- values -------------------------------------------------------------------------


def sqlite_time(dt: datetime) -> str:
    """A timestamp as SQLite stores it (UTC text; SQLAlchemy's DateTime format)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    # isoformat is C and several times faster than strftime: it showed in profiles.
    return dt.isoformat(" ", "microseconds")


def time_param(dialect: str, dt: datetime | None):
    if dt is None:
        return None
    return sqlite_time(dt) if dialect == "sqlite" else dt.astimezone(UTC)


def _time_result(value):
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_result(value):
    # SQLite gives JSON text (psycopg has already parsed jsonb: nothing to do there).
    return None if value is None else json.loads(value)


def _schema_columns() -> tuple[frozenset[str], frozenset[str]]:
    """Names of every timestamp and JSON column of the tables: how a result column of
    that name is read back."""
    from .. import models  # noqa: F401  (the tables)

    times, jsons = set(), set()
    for table in SQLModel.metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime):
                times.add(column.name)
            elif isinstance(column.type, JSON):
                jsons.add(column.name)
    clash = times & jsons
    assert not clash, f"columns named alike with different types: {clash}"
    return frozenset(times), frozenset(jsons)


# --- statements -----------------------------------------------------------------------

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_MARKERS = {
    "sqlite": {"@for_update_of_items": "", "@skip_locked": "", "@for_update": "", "@at_text": "at"},
    "postgresql": {
        "@for_update_of_items": "FOR UPDATE OF items",
        "@skip_locked": "FOR UPDATE SKIP LOCKED",
        "@for_update": "FOR UPDATE",
        "@at_text": "CASE WHEN isfinite(at) THEN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
        "ELSE at::text END",
    },
}


class Query:
    """A named SQL statement. ``json`` names the parameters that are JSON values
    (encoded here); ``encoded_json`` those already given as JSON text (bulk ingest
    encodes while it checks sizes). Result columns are read back by name: timestamp and
    JSON columns of the schema are converted, and ``json_columns`` adds aliases."""

    _times: frozenset[str] | None = None
    _jsons: frozenset[str] | None = None

    def __init__(
        self,
        name: str,
        sql: str | dict[str, str],
        *,
        json: Iterable[str] = (),
        encoded_json: Iterable[str] = (),
        json_columns: Iterable[str] = (),
    ):
        self.name = name
        by_dialect = sql if isinstance(sql, dict) else {"sqlite": sql, "postgresql": sql}
        self.sql = {d: " ".join(text.split()) for d, text in by_dialect.items()}
        self.json = frozenset(json)
        self.encoded_json = frozenset(encoded_json)
        self.json_columns = frozenset(json_columns)
        #: Whether it gives rows back (a SELECT, or a change with RETURNING).
        self.returns_rows = any(
            text.lstrip().upper().startswith("SELECT") or " RETURNING " in f" {text.upper()} "
            for text in self.sql.values()
        )
        #: Parameter names in order of first appearance (the order of ``many`` rows).
        self.params: tuple[str, ...] = tuple(dict.fromkeys(_PARAM.findall(self.sql["sqlite"])))
        self._compiled: dict[str, tuple] = {}

    def __repr__(self) -> str:
        return f"Query({self.name!r})"

    # Compiled once per dialect: (named SQL, positional SQL, row reader cache)
    def _for(self, dialect: str) -> tuple:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            text = self.sql[dialect]
            for marker, clause in _MARKERS[dialect].items():
                text = text.replace(marker, clause)
            if dialect == "sqlite":
                named, positional = text, _PARAM.sub("?", text)
            else:
                jsonb = self.json | self.encoded_json
                escaped = text.replace("%", "%%")
                named = _PARAM.sub(lambda m: f"%({m[1]})s" + ("::jsonb" if m[1] in jsonb else ""), escaped)
                positional = _PARAM.sub(lambda m: "%s" + ("::jsonb" if m[1] in jsonb else ""), escaped)
            compiled = self._compiled[dialect] = (named, positional, {})
        return compiled

    def _values(self, dialect: str, params: dict[str, Any]) -> dict[str, Any]:
        values = dict(params)
        for name in self.json.intersection(params):
            values[name] = json_dumps(params[name])
        for name, value in params.items():
            if type(value) is datetime:
                values[name] = sqlite_time(value) if dialect == "sqlite" else value.astimezone(UTC)
        return values

    def rows(self, tx: Tx, params: dict[str, Any] | None = None) -> list:
        """Run it; the result rows as named tuples (``row.id``, ``row._asdict()``)."""
        dialect = tx.dialect
        named, _, readers = self._for(dialect)
        cursor = tx.cursor()
        cursor.execute(named, self._values(dialect, params) if params else {})
        if not self.returns_rows:
            return []
        # A query's columns never change while the process runs: one reader each.
        # (Reading cursor.description builds objects per column on every call.)
        reader = readers.get("read")
        if reader is None:
            reader = readers["read"] = self._reader(tuple(d[0] for d in cursor.description), dialect)
        return reader(cursor.fetchall())

    def first(self, tx: Tx, params: dict[str, Any] | None = None):
        rows = self.rows(tx, params)
        return rows[0] if rows else None

    def run(self, tx: Tx, params: dict[str, Any] | None = None) -> int:
        """Run it for its effect; the number of rows it changed."""
        dialect = tx.dialect
        cursor = tx.cursor()
        cursor.execute(self._for(dialect)[0], self._values(dialect, params) if params else {})
        if self.returns_rows:
            # SQLite keeps a statement open until its rows are read, and an open
            # statement on the unit's cursor would block the next SAVEPOINT or COMMIT.
            cursor.fetchall()
        return cursor.rowcount

    def many(self, tx: Tx, rows: Sequence[Sequence[Any]]) -> int:
        """Run it once per row (``executemany``), each row's values in the order of
        :attr:`params`, already stored-form (see :func:`time_param`); rows changed."""
        cursor = tx.cursor()
        cursor.executemany(self._for(tx.dialect)[1], rows)
        return cursor.rowcount

    def _reader(self, columns: tuple[str, ...], dialect: str):
        if Query._times is None:
            Query._times, Query._jsons = _schema_columns()
        make = namedtuple(f"{self.name}_row", columns, rename=True)
        convert = [(i, _time_result) for i, c in enumerate(columns) if c in Query._times]
        if dialect == "sqlite":
            convert += [
                (i, _json_result)
                for i, c in enumerate(columns)
                if c in Query._jsons or c in self.json_columns
            ]

        def read(raw_rows: list) -> list:
            if not convert:
                return [make._make(r) for r in raw_rows]
            out = []
            for raw in raw_rows:
                raw = list(raw)
                for i, fn in convert:
                    raw[i] = fn(raw[i])
                out.append(make._make(raw))
            return out

        return read
