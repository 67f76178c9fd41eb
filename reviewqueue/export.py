"""Correction datasets: decided items as JSONL, CSV, Parquet or chat-style JSONL.

One row per decided item in the period (by ``decided_at``, the time of the current,
not-undone decision), sorted by ``decided_at`` then ``item_id``. Every file of a format
has the same columns and types, empty files included, so a folder of weekly files loads
as one dataset.

Periods: an ISO week (``2026-W47``, UTC), explicit ``since``/``until``, or nothing:
everything since the last successful incremental export of the same queue, format and
verdict filter. That watermark is stored in ``export_runs``. The upper bound of an
incremental run is a *settled* moment: every decision stamped before it has committed
(see :func:`settled_until`), so a decision landing while an export runs is never skipped.

Files are written under ``OUT/.partial/`` and renamed into place only when complete
(the next run removes what a killed run left there);
a failed or killed run leaves no data file and does not move the watermark.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Text, bindparam, cast, func, select, text

from . import __version__, clock
from .db import get_engine, is_sqlite, read_conn, transaction, writing
from .errors import ValidationFailed
from .models import ExportRun, Item, Queue, Review

SCHEMA_VERSION = 1
FORMATS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "chat-jsonl": "chat.jsonl"}
COLUMNS = [
    "item_id", "queue", "external_id", "model", "model_version", "input", "context", "output", "confidence",
    "predicted_label", "route", "verdict", "reference_output", "reference_label", "reason", "comment", "reviewer",
    "created_at", "decided_at", "edit_distance", "metadata",
]
#: JSON-valued columns: JSON in JSONL; in CSV and Parquet, a JSON-encoded string (text
#: inputs and outputs stay plain text, objects are encoded).
JSON_COLUMNS = ("input", "context", "output", "reference_output", "metadata")
CHUNK = 5000


def parquet_schema():
    import pyarrow as pa

    types = {"confidence": pa.float64(), "edit_distance": pa.int64()}
    return pa.schema([pa.field(c, types.get(c, pa.string())) for c in COLUMNS])


# --- periods ----------------------------------------------------------------------

@dataclass
class Period:
    label: str
    since: datetime
    until: datetime
    mode: str  # week, range or incremental


def week(spec: str) -> Period:
    try:
        year, _, wk = spec.upper().partition("-W")
        start = datetime.combine(date.fromisocalendar(int(year), int(wk), 1), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise ValidationFailed(f"--week takes an ISO week like 2026-W47 (got {spec!r})") from None
    return Period(f"{int(year)}-W{int(wk):02d}", start, start + timedelta(days=7), "week")


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def span(since: datetime, until: datetime, mode: str = "range") -> Period:
    if until <= since:
        raise ValidationFailed(f"--until ({clock.iso(until)}) must be after --since ({clock.iso(since)})")
    return Period(f"{_stamp(since)}_{_stamp(until)}", since, until, mode)


def settled_until(engine) -> datetime:
    """A moment before which every decision has committed.

    ``decide`` stamps ``decided_at`` inside its write transaction, after the
    transaction's first statement. SQLite: we take the write lock, so no decision is
    in flight, and read the clock. PostgreSQL: no transaction that is still open can
    stamp a time earlier than its own start, so the bound is the oldest open
    transaction's start (or now), less a second for clock skew between hosts.
    """
    if is_sqlite(engine):
        with writing(engine):
            return clock.now()
    now = clock.now()
    with read_conn(engine) as conn:
        oldest = conn.execute(text(
            "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
            "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )).scalar()
    bound = min(now, oldest) if oldest is not None else now
    return bound - timedelta(seconds=1)


def watermark(queue: str, fmt: str, verdicts: str, *, engine) -> datetime | None:
    with read_conn(engine) as conn:
        return conn.execute(
            select(func.max(ExportRun.until)).where(
                ExportRun.queue == queue, ExportRun.format == fmt, ExportRun.verdicts == verdicts,
                ExportRun.mode == "incremental")
        ).scalar()


# --- rows -------------------------------------------------------------------------

def _words(value: Any) -> list[str]:
    if value is None:
        return []
    return (value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)).split()


def edit_distance(a: Any, b: Any) -> int:
    """Word-level Levenshtein distance."""
    x, y = _words(a), _words(b)
    if x == y:
        return 0
    # Trim the common prefix and suffix: corrections are usually local.
    while x and y and x[0] == y[0]:
        x, y = x[1:], y[1:]
    while x and y and x[-1] == y[-1]:
        x, y = x[:-1], y[:-1]
    if not x or not y:
        return len(x) + len(y)
    prev = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        cur = [i]
        for j, wy in enumerate(y, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wx != wy)))
        prev = cur
    return prev[-1]


def _ts(column, dialect: str):
    """A timestamp column as ISO 8601 UTC text, formatted by the database."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    return cast(column, Text)  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC


def _select(dialect: str):
    # JSON columns come back as JSON text and timestamps as text: parsing them into
    # Python objects only to print them again was most of an export's time.
    j = lambda col: cast(col, Text)  # noqa: E731
    return (
        select(
            Item.id, Item.queue, Item.external_id, Item.model, Item.model_version, j(Item.input).label("input"),
            j(Item.context).label("context"), j(Item.output).label("output"), Item.confidence,
            Item.predicted_label, Item.route, Review.verdict, j(Review.final_output).label("final_output"),
            Review.final_label, Review.reason, Review.comment, Review.reviewer,
            _ts(Item.created_at, dialect).label("created_at"), _ts(Review.created_at, dialect).label("decided_at"),
            j(Item.__table__.c.metadata).label("metadata"),
        )
        .join(Review, Review.item_id == Item.id)
        .where(Review.undone_at.is_(None), Review.queue == bindparam("queue"),
               Review.created_at >= bindparam("since"), Review.created_at < bindparam("until"))
        .order_by(Review.created_at, Item.id)
    )


def _rows(engine, queue: str, period: Period, verdicts: list[str] | None):
    """Chunks of rows; JSON-valued fields as :class:`RawJSON`, timestamps as ISO text."""
    stmt = _select(engine.dialect.name)
    if verdicts:
        stmt = stmt.where(Review.verdict.in_(verdicts))
    sqlite = is_sqlite(engine)
    with read_conn(engine) as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(
            stmt, {"queue": queue, "since": period.since, "until": period.until})
        for part in result.partitions(CHUNK):
            yield [_row(r, sqlite) for r in part]


class RawJSON(str):
    """JSON text straight from the database, written into JSONL without re-encoding."""

    __slots__ = ()

    def value(self) -> Any:
        return json.loads(self)

    def text(self) -> str:
        """Plain text for a JSON string, JSON text for anything else (CSV, Parquet, chat)."""
        if not self.startswith('"'):
            return self
        if "\\" not in self:  # no escapes: the text is what is between the quotes
            return self[1:-1]
        return json.loads(self)


def _raw(value: str | None) -> RawJSON | None:
    return None if value is None or value == "null" else RawJSON(value)


def _iso(value: str, sqlite: bool) -> str:
    return value.replace(" ", "T", 1) + "Z" if sqlite else value


def _row(r, sqlite: bool = True) -> dict[str, Any]:
    # Unpacking the row is several times cheaper than reading its attributes by name.
    (item_id, queue, external_id, model, model_version, inp, context, out, confidence, predicted_label, route,
     verdict, final_output, final_label, reason, comment, reviewer, created_at, decided_at, metadata) = r
    output = _raw(out)
    reference = None if verdict == "reject" else _raw(final_output)
    if verdict == "reject":
        distance = None
    elif verdict == "approve" or reference == output:
        distance = 0
    else:
        distance = edit_distance(output.value() if output else None, reference.value() if reference else None)
    return {
        "item_id": item_id, "queue": queue, "external_id": external_id, "model": model,
        "model_version": model_version, "input": _raw(inp), "context": _raw(context) or RawJSON("[]"),
        "output": output, "confidence": confidence, "predicted_label": predicted_label, "route": route,
        "verdict": verdict, "reference_output": reference,
        "reference_label": None if verdict == "reject" else final_label,
        "reason": reason, "comment": comment, "reviewer": reviewer,
        "created_at": _iso(created_at, sqlite), "decided_at": _iso(decided_at, sqlite),
        "edit_distance": distance, "metadata": _raw(metadata) or RawJSON("{}"),
    }


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def _jsonl_line(row: dict[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        parts.append(f'"{k}": ' + (v if isinstance(v, RawJSON) else _ENCODE(v)))
    return "{" + ", ".join(parts) + "}\n"


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """CSV/Parquet: JSON values become JSON text; plain text stays text."""
    out = dict(row)
    for c in JSON_COLUMNS:
        v = out[c]
        if v is not None:
            out[c] = v.text()
    return out


def _as_text(v: RawJSON | None) -> str:
    return "" if v is None else v.text()


# --- writers ----------------------------------------------------------------------

class _Writer:
    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.rows = 0
        self.verdicts: Counter = Counter()
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(str(path), parquet_schema(), compression="zstd")
        else:
            self._fh = open(path, "w", encoding="utf-8", newline="")
            if fmt == "csv":
                self._csv = csv.DictWriter(self._fh, fieldnames=COLUMNS, lineterminator="\n")
                self._csv.writeheader()

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "chat-jsonl":
            rows = [r for r in rows if r["verdict"] in ("approve", "correct")]
        for r in rows:
            self.verdicts[r["verdict"]] += 1
        self.rows += len(rows)
        if self.fmt == "jsonl":
            self._fh.write("".join(_jsonl_line(r) for r in rows))
        elif self.fmt == "chat-jsonl":
            self._fh.write("".join(json.dumps({
                "messages": [{"role": "user", "content": _as_text(r["input"])},
                             {"role": "assistant", "content": _as_text(r["reference_output"])}],
                "metadata": {"item_id": r["item_id"], "queue": r["queue"], "verdict": r["verdict"],
                             "reference_label": r["reference_label"], "model": r["model"],
                             "model_version": r["model_version"]},
            }, ensure_ascii=False) + "\n" for r in rows))
        elif self.fmt == "csv":
            self._csv.writerows(_flat(r) for r in rows)
        else:
            import pyarrow as pa

            if rows:
                flat = [_flat(r) for r in rows]
                columns = {c: [r[c] for r in flat] for c in COLUMNS}
                self._pq.write_table(pa.Table.from_pydict(columns, schema=parquet_schema()))

    def close(self) -> None:
        if self.fmt == "parquet":
            self._pq.close()
        else:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ExportResult:
    queue: str
    format: str
    period: Period
    path: Path
    manifest: Path
    rows: int
    counts_by_verdict: dict[str, int] = field(default_factory=dict)
    sha256: str = ""


def export(
    out_dir: str | Path | None = None, *, fmt: str = "jsonl", queues: list[str] | None = None,
    week_spec: str | None = None, since: datetime | None = None, until: datetime | None = None,
    verdicts: list[str] | None = None, actor: str = "system", engine=None,
) -> list[ExportResult]:
    """Export each queue (default: all) to ``OUT/<queue>/<period>/data.<ext>`` with a
    ``manifest.json``. Returns one result per queue."""
    from .settings import get_settings

    engine = engine or get_engine()
    if fmt not in FORMATS:
        raise ValidationFailed(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    bad = sorted(set(verdicts or []) - {"approve", "correct", "reject"})
    if bad:
        raise ValidationFailed(f"unknown verdict(s) {', '.join(bad)}: use approve, correct or reject")
    if week_spec and (since or until):
        raise ValidationFailed("give either --week or --since/--until, not both")
    out = Path(out_dir or get_settings().export_dir)
    with read_conn(engine) as conn:
        known = list(conn.execute(select(Queue.name).order_by(Queue.name)).scalars())
    targets = queues or known
    missing = sorted(set(targets) - set(known))
    if missing:
        raise ValidationFailed(f"unknown queue(s): {', '.join(missing)}")
    verdict_key = ",".join(sorted(verdicts or []))
    clean_partials(out)
    results = []
    for queue in targets:
        if week_spec:
            period = week(week_spec)
        elif since or until:
            period = span(clock.parse(since) if since else datetime(1970, 1, 1, tzinfo=UTC),
                          clock.parse(until) if until else settled_until(engine))
        else:
            start = watermark(queue, fmt, verdict_key, engine=engine) or datetime(1970, 1, 1, tzinfo=UTC)
            period = span(start, max(settled_until(engine), start + timedelta(microseconds=1)), "incremental")
        results.append(_export_one(out, queue, fmt, period, verdicts, verdict_key, actor, engine))
    return results


def _export_one(out: Path, queue: str, fmt: str, period: Period, verdicts, verdict_key, actor, engine) -> ExportResult:
    final_dir = out / queue / period.label
    partial_dir = out / ".partial"
    partial_dir.mkdir(parents=True, exist_ok=True)
    name = f"data.{FORMATS[fmt]}"
    tmp = partial_dir / f"{queue}.{period.label}.{name}.{os.getpid()}"
    writer = _Writer(tmp, fmt)
    try:
        for chunk in _rows(engine, queue, period, verdicts):
            writer.write(chunk)
        writer.close()
    except BaseException:
        try:
            writer.close()
        finally:
            tmp.unlink(missing_ok=True)
        raise
    digest = _sha256(tmp)
    final_dir.mkdir(parents=True, exist_ok=True)
    target = final_dir / name
    manifest_path = final_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    entry = {
        "file": name, "format": fmt, "rows": writer.rows, "counts_by_verdict": dict(sorted(writer.verdicts.items())),
        "sha256": digest, "verdicts": verdict_key or "all", "created_at": clock.iso(clock.now()),
    }
    manifest.update({
        "schema_version": SCHEMA_VERSION, "queue": queue, "reviewqueue_version": __version__,
        "period": {"label": period.label, "since": clock.iso(period.since), "until": clock.iso(period.until),
                   "mode": period.mode},
        "columns": COLUMNS,
    })
    manifest.setdefault("files", {})[fmt] = entry
    manifest.update({k: entry[k] for k in ("format", "rows", "counts_by_verdict", "sha256", "created_at")})
    tmp_manifest = partial_dir / f"{queue}.{period.label}.manifest.{os.getpid()}"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    os.replace(tmp_manifest, manifest_path)
    with transaction(engine) as session:  # the watermark moves only after the files are in place
        session.add(ExportRun(queue=queue, format=fmt, verdicts=verdict_key, mode=period.mode, since=period.since,
                              until=period.until, rows=writer.rows, path=str(target), sha256=digest,
                              created_by=actor))
    return ExportResult(queue, fmt, period, target, manifest_path, writer.rows, dict(writer.verdicts), digest)


def runs(*, limit: int = 100, engine=None) -> list[ExportRun]:
    from .db import reading

    with reading(engine) as session:
        return list(session.scalars(select(ExportRun).order_by(ExportRun.id.desc()).limit(limit)))


def clean_partials(out_dir: str | Path) -> list[Path]:
    """Remove what killed runs left under ``OUT/.partial``: files whose writing process
    (the pid ends the name) is gone. A running export's files are left alone."""
    removed = []
    for path in (Path(out_dir) / ".partial").glob("*"):
        try:
            os.kill(int(path.name.rsplit(".", 1)[-1]), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue  # not ours to judge
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


