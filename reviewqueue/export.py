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
import queue as queue_lib
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Text, bindparam, case, cast, func, literal_column, or_, select

from . import __version__, clock, store
from .errors import invalid
from .models import ExportRun, Item, Queue, Review
from .vocab import Verdict

SCHEMA_VERSION = 1
FORMATS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "chat-jsonl": "chat.jsonl"}
COLUMNS = [
    "item_id",
    "queue",
    "external_id",
    "model",
    "model_version",
    "input",
    "context",
    "output",
    "confidence",
    "predicted_label",
    "route",
    "verdict",
    "reference_output",
    "reference_label",
    "reason",
    "comment",
    "reviewer",
    "created_at",
    "decided_at",
    "edit_distance",
    "metadata",
]
#: JSON-valued columns: JSON in JSONL; in CSV and Parquet, a JSON-encoded string (text
#: inputs and outputs stay plain text, objects are encoded).
JSON_COLUMNS = ("input", "context", "output", "reference_output", "metadata")
CHUNK = 10_000
#: Low-cardinality columns, dictionary-encoded in Parquet.
DICTIONARY_COLUMNS = [
    "queue",
    "model",
    "model_version",
    "predicted_label",
    "route",
    "verdict",
    "reference_label",
    "reason",
    "reviewer",
]


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
        raise invalid("week", f"{spec!r} is not an ISO week like 2026-W47") from None
    return Period(f"{int(year)}-W{int(wk):02d}", start, start + timedelta(days=7), "week")


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def span(since: datetime, until: datetime, mode: str = "range") -> Period:
    if until <= since:
        raise invalid(
            "until", f"the period's end ({clock.iso(until)}) must be after its start ({clock.iso(since)})"
        )
    return Period(f"{_stamp(since)}_{_stamp(until)}", since, until, mode)


def settled_until(engine) -> datetime:
    """A moment before which every decision has committed.

    ``decide`` stamps ``decided_at`` inside its write transaction, after the
    transaction's first statement. SQLite: we take the write lock, so no decision is
    in flight, and read the clock. PostgreSQL: no transaction that is still open can
    stamp a time earlier than its own start, so the bound is the oldest open
    transaction's start (or now), less a second for clock skew between hosts.
    """
    if store.is_sqlite(engine):
        with store.write(engine):
            return clock.now()
    return store.settled_before(engine, clock.now())


def watermark(queue: str, fmt: str, verdicts: str, *, engine) -> datetime | None:
    with store.read(engine) as tx:
        return tx.execute(
            select(func.max(ExportRun.until)).where(
                ExportRun.queue == queue,
                ExportRun.format == fmt,
                ExportRun.verdicts == verdicts,
                ExportRun.mode == "incremental",
            )
        ).scalar()


# --- rows -------------------------------------------------------------------------
#
# The database shapes every row: JSON comes back as text (raw JSON for JSONL, plain
# text for CSV and Parquet), timestamps as ISO 8601 text, the reference columns per
# verdict, and the edit distance as stored with the decision. Rows arrive as plain
# tuples in COLUMNS order, so the writers never touch a value one at a time in Python
# (Parquet) or only to encode a line (JSONL): that is what makes exports fast.


def _ts(column, dialect: str):
    """A timestamp column as ISO 8601 UTC text, formatted by the database."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC.
    return func.replace(cast(column, Text), " ", "T").op("||")("Z")


def _json(column, dialect: str, as_text: bool, default: str | None = None):
    """A JSON column as JSON text (JSONL), or as plain text when it holds a string and
    as JSON text otherwise (CSV, Parquet). JSON null is a missing value."""
    if not as_text:
        value = func.nullif(cast(column, Text), "null")
    elif dialect == "postgresql":
        value = case(
            (func.jsonb_typeof(column) == "string", column.op("#>>")(literal_column("'{}'"))),
            (func.jsonb_typeof(column) == "null", None),
            else_=cast(column, Text),
        )
    else:
        value = case(
            (func.json_type(column) == "text", func.json_extract(column, "$")),
            (func.json_type(column) == "null", None),
            else_=cast(column, Text),
        )
    return func.coalesce(value, default) if default is not None else value


def _select(dialect: str, json_as_text: bool, verdicts: list[str] | None):
    j = lambda col, default=None: _json(col, dialect, json_as_text, default)  # noqa: E731
    kept = Review.verdict != Verdict.REJECT
    stmt = (
        select(
            Item.id,
            Item.queue,
            Item.external_id,
            Item.model,
            Item.model_version,
            j(Item.input),
            j(Item.context, "[]"),
            j(Item.output),
            Item.confidence,
            Item.predicted_label,
            Item.route,
            Review.verdict,
            case((kept, j(Review.final_output))),
            case((kept, Review.final_label)),
            Review.reason,
            Review.comment,
            Review.reviewer,
            _ts(Item.created_at, dialect),
            _ts(Review.created_at, dialect),
            Review.edit_distance,
            j(Item.__table__.c.metadata, "{}"),
        )
        .join(Review, Review.item_id == Item.id)
        .where(
            Review.undone_at.is_(None),
            Review.queue == bindparam("queue"),
            Review.created_at >= bindparam("since"),
            Review.created_at < bindparam("until"),
        )
        .order_by(Review.created_at, Review.item_id)
    )
    # One bind per verdict (store.stream_tuples takes no expanding IN).
    return (
        stmt.where(or_(*(Review.verdict == bindparam(f"verdict_{v}", v) for v in verdicts)))
        if verdicts
        else stmt
    )


def _rows(
    engine,
    queue: str,
    period: Period,
    verdicts: list[str] | None,
    *,
    json_as_text: bool,
    chunk: int = CHUNK,
    ahead: int = 2,
):
    """Chunks of row tuples in COLUMNS order, read up to ``ahead`` chunks ahead on a
    second thread so the database works while this one writes."""
    stmt = _select(engine.dialect.name, json_as_text, verdicts)
    params = {"queue": queue, "since": period.since, "until": period.until}
    return _read_ahead(store.stream_tuples(engine, stmt, params, size=chunk), depth=ahead)


_DONE = object()


def _read_ahead(chunks: Iterator[list[tuple]], depth: int = 2) -> Iterator[list[tuple]]:
    """Iterate ``chunks`` on a worker thread, up to ``depth`` chunks ahead. SQLite and
    psycopg release the GIL while they fetch, so reading and writing overlap on two
    cores. An error on either side stops both."""
    ahead: queue_lib.Queue = queue_lib.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue_lib.Full:
                continue
        return False

    def work() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    break
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            chunks.close()

    worker = threading.Thread(target=work, name="export-reader", daemon=True)
    worker.start()
    try:
        while (item := ahead.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_JSON_AT = frozenset(COLUMNS.index(c) for c in JSON_COLUMNS)
_KEYS = [f'"{c}": ' for c in COLUMNS]


def _jsonl_line(row: tuple) -> str:
    return (
        "{"
        + ", ".join(
            k + ("null" if v is None else v if i in _JSON_AT else _ENCODE(v))
            for i, (k, v) in enumerate(zip(_KEYS, row, strict=True))
        )
        + "}\n"
    )


# --- writers ----------------------------------------------------------------------

_AT = {c: i for i, c in enumerate(COLUMNS)}


class _Writer:
    """Writes one data file; or, with ``part=True``, one slice of it for the process
    that assembles the file (Arrow IPC for Parquet, the file's own lines otherwise)."""

    def __init__(self, path: Path, fmt: str, *, part: bool = False):
        self.path, self.fmt = path, fmt
        self.rows = 0
        self.verdicts: Counter = Counter()
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = parquet_schema()
            if part:
                self._sink = pa.ipc.new_file(str(path), self._schema)
            else:
                # Dictionary encoding only where values repeat: trying it on every text
                # column (and giving up on inputs and outputs) was a fifth of the write time.
                self._sink = pq.ParquetWriter(
                    str(path), self._schema, compression="zstd", use_dictionary=DICTIONARY_COLUMNS
                )
        else:
            self._fh = open(path, "w", encoding="utf-8", newline="")
            if fmt == "csv":
                self._csv = csv.writer(self._fh, lineterminator="\n")
                if not part:
                    self._csv.writerow(COLUMNS)

    def write(self, rows: list[tuple]) -> None:
        self.rows += len(rows)
        self.verdicts.update(r[_AT["verdict"]] for r in rows)
        if self.fmt == "parquet":
            import pyarrow as pa

            arrays = [pa.array([r[i] for r in rows], type=f.type) for i, f in enumerate(self._schema)]
            for i in _JSON_AT:
                arrays[i] = _arrow_text(arrays[i])
            self._sink.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        elif self.fmt == "jsonl":
            self._fh.write("".join(map(_jsonl_line, rows)))
        elif self.fmt == "csv":
            self._csv.writerows(rows)
        else:
            self._fh.write("".join(_chat_line(r) for r in rows))

    def append(self, part: Path, rows: int, verdicts: dict[str, int]) -> None:
        """Add a slice another process wrote with ``part=True``."""
        self.rows += rows
        self.verdicts.update(verdicts)
        if self.fmt == "parquet":
            import pyarrow as pa

            with pa.memory_map(str(part)) as source:
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    self._sink.write_batch(reader.get_batch(i))
        else:
            self._fh.flush()
            with open(part, "rb") as f:
                shutil.copyfileobj(f, self._fh.buffer, 1 << 20)

    def close(self, *, sync: bool = True) -> None:
        if self.fmt == "parquet":
            self._sink.close()
        else:
            self._fh.flush()
            if sync:
                os.fsync(self._fh.fileno())
            self._fh.close()


#: JSON's two-character escapes and what they stand for. Without an escaped backslash
#: among them, each can be replaced on its own, in any order.
_SIMPLE_ESCAPES = [
    ('\\"', '"'),
    ("\\n", "\n"),
    ("\\t", "\t"),
    ("\\r", "\r"),
    ("\\/", "/"),
    ("\\b", "\b"),
    ("\\f", "\f"),
]


def _arrow_text(raw):
    """JSON text to the CSV/Parquet form, column-wise: a JSON string becomes its text,
    anything else stays JSON text. Strings are unquoted and their common escapes
    (quotes, line breaks, tabs) replaced in Arrow; only strings with an escaped
    backslash or a \\u escape are decoded one by one by json."""
    import pyarrow as pa
    import pyarrow.compute as pc

    quoted = pc.starts_with(raw, '"')
    text = pc.if_else(quoted, pc.utf8_slice_codeunits(raw, 1, -1), raw)
    escaped = pc.and_(quoted, pc.match_substring(raw, "\\"))
    if not pc.any(escaped).as_py():
        return text
    hard = pc.and_(escaped, pc.match_substring_regex(raw, r"\\[\\u]"))
    simple = pc.and_(escaped, pc.invert(hard))
    if pc.any(simple).as_py():
        part = pc.filter(text, simple)
        for escape, char in _SIMPLE_ESCAPES:
            part = pc.replace_substring(part, escape, char)
        text = pc.replace_with_mask(text, simple, part)
    if pc.any(hard).as_py():
        decoded = pa.array([json.loads(v) for v in pc.filter(raw, hard).to_pylist()], type=pa.string())
        text = pc.replace_with_mask(text, hard, decoded)
    return text


def _chat_line(r: tuple) -> str:
    return (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": r[_AT["input"]] or ""},
                    {"role": "assistant", "content": r[_AT["reference_output"]] or ""},
                ],
                "metadata": {
                    k: r[_AT[k]]
                    for k in ("item_id", "queue", "verdict", "reference_label", "model", "model_version")
                },
            },
            ensure_ascii=False,
        )
        + "\n"
    )


# --- parallel slices ---------------------------------------------------------------
#
# One process tops out near what SQLite needs just to read the rows, because building
# a Python object per value holds the GIL. Large exports are therefore cut into slices
# of about SLICE_ROWS decisions (by decided_at, so slices are in file order); worker
# processes each read and convert a slice into a part file under OUT/.partial, and this
# process appends the parts in order. The data file is the same either way (tests
# compare the bytes).

SLICE_ROWS = 50_000
WORKER_CHUNK = 5_000
_JSON_AS_TEXT = {"jsonl": False, "parquet": False, "csv": True, "chat-jsonl": True}
# Parquet reads raw JSON and turns JSON strings into text column-wise (_arrow_text).


def _slices(engine, queue: str, period: Period) -> list[tuple[datetime, datetime]]:
    """Cut the period every SLICE_ROWS decisions of the queue (an index walk)."""

    def first(after, *, offset: int, inclusive: bool):
        return (
            select(Review.created_at)
            .where(
                Review.queue == queue,
                Review.created_at < period.until,
                Review.created_at >= after if inclusive else Review.created_at > after,
            )
            .order_by(Review.created_at)
            .limit(1)
            .offset(offset)
        )

    cuts = [period.since]
    with store.read(engine) as tx:
        while (cut := tx.execute(first(cuts[-1], offset=SLICE_ROWS, inclusive=True)).scalar()) is not None:
            if cut == cuts[-1]:  # more than SLICE_ROWS decisions at one instant: the slice takes them all
                cut = tx.execute(first(cut, offset=0, inclusive=False)).scalar()
                if cut is None:
                    break
            cuts.append(cut)
    cuts.append(period.until)
    return list(zip(cuts, cuts[1:], strict=False))


def _write_slice(url: str, fmt: str, queue: str, since: datetime, until: datetime, verdicts, path: str):
    """In a worker process: one slice to a part file. Returns its rows and verdicts."""
    engine = store.make_engine(url, pool=False)
    try:
        part = _Writer(Path(path), fmt, part=True)
        try:
            # Smaller chunks, one ahead: several workers hold chunks at once, and the
            # export's memory is the sum of all of them.
            for chunk in _rows(
                engine,
                queue,
                Period("slice", since, until, "range"),
                verdicts,
                json_as_text=_JSON_AS_TEXT[fmt],
                chunk=WORKER_CHUNK,
                ahead=1,
            ):
                part.write(chunk)
        finally:
            part.close(sync=False)
        return part.rows, dict(part.verdicts)
    finally:
        store.dispose(engine)


class _Workers:
    """``python -m reviewqueue.export_worker`` processes, one JSON task per line on
    stdin and one JSON answer per line on stdout. Plain subprocesses rather than
    multiprocessing: they start clean (no copy of this process's threads and locks) and
    never re-import the caller's ``__main__`` script."""

    def __init__(self, count: int):
        import subprocess
        import sys

        # This copy of reviewqueue, whether installed or run from a checkout.
        here = str(Path(__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
        }
        # Arrow's default allocator keeps freed memory for reuse; with one allocator
        # per worker that retained memory adds up (measured: 240 MB a worker, 190 without).
        env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        self._procs = [
            subprocess.Popen(
                [sys.executable, "-m", "reviewqueue.export_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                env=env,
            )
            for _ in range(count)
        ]

    def send(self, k: int, task: dict) -> None:
        proc = self._procs[k % len(self._procs)]
        proc.stdin.write(json.dumps(task) + "\n")

    def receive(self, k: int) -> dict:
        proc = self._procs[k % len(self._procs)]
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(f"export worker exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"export worker failed: {answer['error']}")
        return answer

    def close(self) -> None:
        # Done, or stopping after an error: either way nothing a worker still does is
        # wanted, and waiting for interpreters to tear down cost a quarter second each.
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:  # a broken pipe to a killed worker
                    pass


def _write_slices(
    writer: _Writer, engine, queue: str, fmt: str, slices, verdicts, partial_dir: Path, workers: int
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    run = uuid.uuid4().hex[:8]  # two exports of one queue in one process must not share parts
    parts = [partial_dir / f"{queue}.{run}.part{k}.{os.getpid()}" for k in range(len(slices))]
    ahead = 2 * workers  # slices queued at once: every worker busy, at most two parts each on disk

    def send(k: int) -> None:
        since, until = slices[k]
        pool.send(
            k,
            {
                "url": url,
                "fmt": fmt,
                "queue": queue,
                "since": clock.iso(since),
                "until": clock.iso(until),
                "verdicts": verdicts,
                "path": str(parts[k]),
            },
        )

    pool = _Workers(min(workers, len(slices)))
    try:
        for k in range(min(ahead, len(slices))):
            send(k)
        for k in range(len(slices)):
            answer = pool.receive(k)
            writer.append(parts[k], answer["rows"], answer["verdicts"])
            parts[k].unlink()
            if k + ahead < len(slices):
                send(k + ahead)
    finally:
        pool.close()
        for path in parts:
            path.unlink(missing_ok=True)


def worker_main() -> None:
    """The loop of ``python -m reviewqueue.export_worker``."""
    import sys
    import traceback

    for line in sys.stdin:
        task = json.loads(line)
        try:
            rows, counts = _write_slice(
                task["url"],
                task["fmt"],
                task["queue"],
                clock.parse(task["since"]),
                clock.parse(task["until"]),
                task["verdicts"],
                task["path"],
            )
            answer = {"rows": rows, "verdicts": counts}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-4000:]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


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
    out_dir: str | Path | None = None,
    *,
    fmt: str = "jsonl",
    queues: list[str] | None = None,
    week_spec: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    verdicts: list[str] | None = None,
    actor: str = "system",
    engine=None,
    workers: int | None = None,
) -> list[ExportResult]:
    """Export each queue (default: all) to ``OUT/<queue>/<period>/data.<ext>`` with a
    ``manifest.json``. Returns one result per queue. ``workers`` processes read and
    convert slices of a large export in parallel (default ``REVIEWQUEUE_EXPORT_WORKERS``)."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    if fmt not in FORMATS:
        raise invalid("format", f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    bad = sorted(set(verdicts or []) - set(Verdict))
    if bad:
        raise invalid(
            "verdict", f"unknown verdict(s) {', '.join(bad)}: the verdicts are {', '.join(Verdict)}"
        )
    if week_spec and (since or until):
        raise invalid("week", "a period is either a week or a since/until range, not both")
    out = Path(out_dir or settings.export_dir)
    with store.read(engine) as tx:
        known = list(tx.execute(select(Queue.name).order_by(Queue.name)).scalars())
    targets = queues or known
    missing = sorted(set(targets) - set(known))
    if missing:
        raise invalid("queue", f"unknown queue(s): {', '.join(missing)}")
    verdict_key = ",".join(sorted(verdicts or []))
    clean_partials(out)
    results = []
    for queue in targets:
        if week_spec:
            period = week(week_spec)
        elif since or until:
            period = span(
                clock.parse(since) if since else datetime(1970, 1, 1, tzinfo=UTC),
                clock.parse(until) if until else settled_until(engine),
            )
        else:
            start = watermark(queue, fmt, verdict_key, engine=engine) or datetime(1970, 1, 1, tzinfo=UTC)
            period = span(start, max(settled_until(engine), start + timedelta(microseconds=1)), "incremental")
        results.append(
            _export_one(
                out,
                queue,
                fmt,
                period,
                verdicts,
                verdict_key,
                actor,
                engine,
                workers or settings.export_workers,
            )
        )
    return results


def _export_one(
    out: Path, queue: str, fmt: str, period: Period, verdicts, verdict_key, actor, engine, workers: int
) -> ExportResult:
    final_dir = out / queue / period.label
    partial_dir = out / ".partial"
    partial_dir.mkdir(parents=True, exist_ok=True)
    name = f"data.{FORMATS[fmt]}"
    tmp = partial_dir / f"{queue}.{period.label}.{name}.{os.getpid()}"
    writer = _Writer(tmp, fmt)
    if fmt == "chat-jsonl":  # a fine-tuning record needs a reference output
        verdicts = [v for v in verdicts or (Verdict.APPROVE, Verdict.CORRECT) if v != Verdict.REJECT]
    try:
        if verdicts != []:
            in_memory = engine.url.database in (None, "", ":memory:")  # other processes cannot see it
            slices = (
                _slices(engine, queue, period)
                if workers > 1 and not in_memory
                else [(period.since, period.until)]
            )
            if len(slices) == 1:
                for chunk in _rows(engine, queue, period, verdicts, json_as_text=_JSON_AS_TEXT[fmt]):
                    writer.write(chunk)
            else:
                _write_slices(writer, engine, queue, fmt, slices, verdicts, partial_dir, workers)
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
        "file": name,
        "format": fmt,
        "rows": writer.rows,
        "counts_by_verdict": dict(sorted(writer.verdicts.items())),
        "sha256": digest,
        "verdicts": verdict_key or "all",
        "created_at": clock.iso(clock.now()),
    }
    manifest.update(
        {
            "schema_version": SCHEMA_VERSION,
            "queue": queue,
            "reviewqueue_version": __version__,
            "period": {
                "label": period.label,
                "since": clock.iso(period.since),
                "until": clock.iso(period.until),
                "mode": period.mode,
            },
            "columns": COLUMNS,
        }
    )
    manifest.setdefault("files", {})[fmt] = entry
    manifest.update({k: entry[k] for k in ("format", "rows", "counts_by_verdict", "sha256", "created_at")})
    tmp_manifest = partial_dir / f"{queue}.{period.label}.manifest.{os.getpid()}"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    os.replace(tmp_manifest, manifest_path)
    with store.write(engine) as tx:  # the watermark moves only after the files are in place
        tx.session.add(
            ExportRun(
                queue=queue,
                format=fmt,
                verdicts=verdict_key,
                mode=period.mode,
                since=period.since,
                until=period.until,
                rows=writer.rows,
                path=str(target),
                sha256=digest,
                created_by=actor,
            )
        )
    return ExportResult(queue, fmt, period, target, manifest_path, writer.rows, dict(writer.verdicts), digest)


def runs(*, limit: int = 100, engine=None) -> list[ExportRun]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(ExportRun).order_by(ExportRun.id.desc()).limit(limit)))


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
