"""Running an export: where files go, the feeds' watermarks, and how a file and its
record move together.

Layout: ``OUT/<format>/<queue>/weeks/<week>/``, ``.../feeds/<feed>/<period>/`` and
``.../ranges/<period>/``, each with ``data.<ext>`` and ``_manifest.json``. ``weeks/`` is
one dataset (weeks never overlap), so is each ``feeds/<feed>/`` (a feed never repeats a
decision), and each range folder; a week export and a feed to the same ``OUT`` never
mix (they once shared ``OUT/<format>/<queue>/`` and a folder read as one dataset held
179 items twice). Arrow, pandas and DuckDB skip files whose names start with ``_``.

Feeds: an incremental export belongs to a named feed (``--feed``; by default one per
format and verdict filter, stored in the database) and continues from that feed's last
run, so two feeds never take decisions from each other. Week and range exports never
move any watermark.

A run and its file move together. The file is written under ``OUT/.partial/``; then,
in one transaction, the run is recorded with its final path and the partial path it is
waiting in (the watermark moves here); then the files are renamed into place and the
record's ``pending_path`` cleared. A process killed between those steps leaves a record
whose file is still partial: the next export (or :func:`recover`) renames it into place,
or, if the partial file is gone, deletes the record so the period is exported again.
Killed before the commit, a run leaves only a partial file, removed by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, or_, select, update

from .. import __version__, clock, events, store
from ..errors import Conflict, invalid
from ..models import ExportRun, Queue
from ..store import queries
from ..vocab import EventKind, Verdict
from . import partials
from .columns import COLUMNS, FORMATS, JSON_AS_TEXT, SCHEMA_VERSION
from .periods import Period, settled_until, span, week
from .rows import read_rows
from .slices import cut, write_slices
from .writers import Writer, private_file

MANIFEST = "_manifest.json"
INCREMENTAL = "incremental"
#: How long a recorded run's own process has to move its file into place (a rename
#: and an fsync) before any process may finish or forget it.
PENDING = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _crash_point(name: str) -> None:
    """Fault injection for the crash tests: ``REVIEWQUEUE_EXPORT_CRASH_AT=<name>`` kills
    this process (SIGKILL, no clean-up) at that step."""
    if os.environ.get("REVIEWQUEUE_EXPORT_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


def sha256_of(path: Path) -> str:
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
    feed: str | None = None


def default_feed(fmt: str, verdict_key: str) -> str:
    """The feed an incremental export belongs to when none is named: one per format and
    verdict filter (its watermark is per queue). Never a local path: every host running
    the same cron line must continue the same feed (two hosts once each exported part
    of a dataset, to folders of the same name)."""
    return f"{fmt}{'+' + verdict_key if verdict_key else ''}"


def watermark(feed: str, queue: str, *, engine) -> datetime | None:
    """Where ``feed`` continues for ``queue``: the end of its last run."""
    with store.read(engine) as tx:
        return tx.execute(
            select(func.max(ExportRun.until)).where(ExportRun.feed == feed, ExportRun.queue == queue)
        ).scalar()


def export(
    out_dir: str | Path | None = None,
    *,
    fmt: str = "jsonl",
    queues: list[str] | None = None,
    week_spec: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    verdicts: list[str] | None = None,
    feed: str | None = None,
    actor: str = "system",
    engine=None,
    workers: int | None = None,
) -> list[ExportResult]:
    """Export each queue (default: all) to ``OUT/<format>/<queue>/<period>/data.<ext>``.

    With a period (``week_spec``, or ``since``/``until``) it is an ad-hoc export that
    moves no watermark; without one it continues ``feed`` (see the module docstring).
    ``workers`` processes read and convert slices of a large export in parallel
    (default ``REVIEWQUEUE_EXPORT_WORKERS``). Returns one result per queue."""
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
    ad_hoc = bool(week_spec or since or until)
    if ad_hoc and feed:
        raise invalid("feed", "a feed continues from its last run; a week or range export belongs to no feed")
    # Absolute: runs record where their files are, for any later process to find.
    out = Path(os.path.abspath(out_dir or settings.export_dir))
    with store.read(engine) as tx:
        known = list(tx.execute(select(Queue.name).order_by(Queue.name)).scalars())
    targets = queues or known
    missing = sorted(set(targets) - set(known))
    if missing:
        raise invalid("queue", f"unknown queue(s): {', '.join(missing)}")
    verdict_key = ",".join(sorted(verdicts or []))
    if not ad_hoc:
        feed = feed or default_feed(fmt, verdict_key)
        _check_feed(feed, fmt, verdict_key, out, engine)
    recover(engine)
    clean_partials(out, engine=engine)
    results = []
    for queue in targets:
        if week_spec:
            period = week(week_spec)
        elif ad_hoc:
            period = span(
                clock.parse(since) if since else _EPOCH,
                clock.parse(until) if until else settled_until(engine),
            )
        else:
            start = watermark(feed, queue, engine=engine) or _EPOCH
            period = span(start, max(settled_until(engine), start + timedelta(microseconds=1)), INCREMENTAL)
        results.append(
            _export_one(
                out,
                queue,
                fmt,
                period,
                verdicts,
                verdict_key,
                feed,
                actor,
                engine,
                workers or settings.export_workers,
            )
        )
    return results


def _check_feed(feed: str, fmt: str, verdict_key: str, out: Path, engine) -> None:
    """A feed always writes the same format and verdicts, to one folder, which every
    host that continues it must see: otherwise each folder would hold only part of the
    feed (two hosts running the same cron line once split a dataset 2,984 + 72)."""
    with store.read(engine) as tx:
        last = tx.session.scalars(
            select(ExportRun).where(ExportRun.feed == feed).order_by(ExportRun.id.desc()).limit(1)
        ).first()
    if last is None:
        return
    if last.format != fmt or last.verdicts != verdict_key:
        raise invalid(
            "feed",
            f"feed {feed!r} exports {last.format} ({last.verdicts or 'all verdicts'}); "
            "an export of another shape needs a feed of its own",
        )
    place = _out_of(Path(last.path), fmt)
    if place is not None and place != out:
        raise invalid(
            "feed",
            f"feed {feed!r} writes to {place}; this export would write to {out}, and each folder would hold "
            f"only part of it: export to {place}, or name a feed of its own for this folder (--feed NAME)",
        )
    if last.host and last.host != partials.HOST and not Path(last.path).exists():
        raise invalid(
            "feed",
            f"feed {feed!r} last wrote {last.path} on host {last.host}, and that file is not visible here: this "
            "host's folder would hold only part of the feed. Run the feed's export on one host, or put the "
            "export folder on storage every host shares",
        )


def dataset_folder(mode: str, feed: str | None) -> str:
    """Where, under ``OUT/<format>/<queue>/``, a run of this kind goes: one folder per
    dataset. Weeks never overlap (``weeks/``); each feed never repeats a decision
    (``feeds/<feed>/``); ranges may overlap, so each range folder is a dataset of its own."""
    if mode == "week":
        return "weeks"
    if mode == INCREMENTAL:
        return "feeds/" + re.sub(r"[^A-Za-z0-9._+-]", "_", feed or "default")
    return "ranges"


def _out_of(data_file: Path, fmt: str) -> Path | None:
    """The export folder a run's file is in: ``OUT/<format>/<queue>/feeds/<feed>/<period>/
    data.<ext>`` (or, from before 0.2, ``OUT/<format>/<queue>/<period>/data.<ext>``)."""
    parts = data_file.parts
    if len(parts) >= 7 and parts[-4] == "feeds" and parts[-6] == fmt:
        return Path(*parts[:-6])
    if len(parts) >= 5 and parts[-4] == fmt:
        return Path(*parts[:-4])
    return None


def _export_one(
    out: Path,
    queue: str,
    fmt: str,
    period: Period,
    verdicts,
    verdict_key: str,
    feed: str | None,
    actor: str,
    engine,
    workers: int,
) -> ExportResult:
    final_dir = out / fmt / queue / dataset_folder(period.mode, feed) / period.label
    partial_dir = out / ".partial"
    _mkdirs(partial_dir)
    name = f"data.{FORMATS[fmt]}"
    token = f"{queue}.{period.label}.{fmt}.{uuid.uuid4().hex[:8]}"
    tmp = partial_dir / f"{token}.data.{partials.suffix()}"
    tmp_manifest = partial_dir / f"{token}.manifest.{partials.suffix()}"
    if fmt == "chat-jsonl":  # a fine-tuning record needs a reference output
        verdicts = [v for v in verdicts or (Verdict.APPROVE, Verdict.CORRECT) if v != Verdict.REJECT]
    writer = Writer(tmp, fmt)
    try:
        if verdicts != []:
            in_memory = engine.url.database in (None, "", ":memory:")  # other processes cannot see it
            slices = (
                cut(engine, queue, period)
                if workers > 1 and not in_memory
                else [(period.since, period.until)]
            )
            if len(slices) == 1:
                for chunk in read_rows(engine, queue, period, verdicts, json_as_text=JSON_AS_TEXT[fmt]):
                    writer.write(chunk)
            else:
                write_slices(writer, engine, queue, fmt, slices, verdicts, partial_dir, workers)
        writer.close()
        digest = sha256_of(tmp)
        manifest = _manifest(queue, fmt, period, name, writer, digest, verdict_key, feed)
        _write_synced(tmp_manifest, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _crash_point("before_commit")
        target = final_dir / name
        run_id = _record(
            engine, queue, fmt, verdict_key, period, feed, writer.rows, target, tmp, digest, actor
        )
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)
        raise
    _crash_point("after_commit")
    _move_into_place(engine, run_id, tmp, target, digest)
    return ExportResult(
        queue, fmt, period, target, final_dir / MANIFEST, writer.rows, dict(writer.verdicts), digest, feed
    )


def _manifest(queue, fmt, period, name, writer, digest, verdict_key, feed) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "queue": queue,
        "reviewqueue_version": __version__,
        "period": {
            "label": period.label,
            "since": clock.iso(period.since),
            "until": clock.iso(period.until),
            "mode": period.mode,
        },
        "feed": feed,
        "columns": COLUMNS,
        "file": name,
        "format": fmt,
        "rows": writer.rows,
        "counts_by_verdict": dict(sorted(writer.verdicts.items())),
        "sha256": digest,
        "verdicts": verdict_key or "all",
        "created_at": clock.iso(clock.now()),
        # Erasures of exported items after this file was written are added here (#12).
        "erasures": [],
    }


def _mkdirs(path: Path) -> None:
    """Create ``path`` and its missing parents, 0750 each (umask permitting)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o750, exist_ok=True)


def _write_synced(path: Path, text: str) -> None:
    private_file(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _record(engine, queue, fmt, verdict_key, period, feed, rows, target, tmp, digest, actor) -> int:
    """Record the run (moving its feed's watermark) with the partial file it waits in."""
    with store.write(engine) as tx:
        if feed is not None:
            # Two runs of one feed at once would export the same decisions twice: the
            # second to commit finds the watermark moved and gives up.
            queries.lock_key(tx, f"export-feed:{feed}:{queue}")
            latest = tx.execute(
                select(func.max(ExportRun.until)).where(ExportRun.feed == feed, ExportRun.queue == queue)
            ).scalar()
            if (latest or _EPOCH) != period.since:
                raise Conflict(
                    f"another export of feed {feed!r} for {queue} ran meanwhile; nothing was exported"
                )
        run = ExportRun(
            queue=queue,
            format=fmt,
            verdicts=verdict_key,
            mode=period.mode,
            feed=feed,
            since=period.since,
            until=period.until,
            rows=rows,
            path=str(target),
            pending_path=str(tmp),
            pending_until=clock.now() + PENDING,
            host=partials.HOST,
            sha256=digest,
            created_by=actor,
        )
        tx.session.add(run)
        tx.session.flush()
        events.record(
            tx,
            EventKind.EXPORT_WRITTEN,
            actor,
            queue=queue,
            after={
                "run": run.id,
                "format": fmt,
                "feed": feed,
                "mode": period.mode,
                "since": clock.iso(period.since),
                "until": clock.iso(period.until),
                "rows": rows,
                "sha256": digest,
                "path": str(target),
            },
        )
        return run.id


def _move_into_place(engine, run_id: int, tmp: Path, target: Path, digest: str) -> None:
    manifest_tmp = tmp.with_name(tmp.name.replace(".data.", ".manifest.", 1))
    _mkdirs(target.parent)
    try:
        os.replace(tmp, target)
    except FileNotFoundError:
        if not (target.exists() and sha256_of(target) == digest):
            raise
    _crash_point("after_rename")
    try:
        os.replace(manifest_tmp, target.parent / MANIFEST)
    except FileNotFoundError:
        pass  # moved by a recovering process
    _fsync_dir(target.parent)
    with store.write(engine) as tx:
        tx.execute(update(ExportRun).where(ExportRun.id == run_id).values(pending_path=None))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(engine) -> list[int]:
    """Finish what killed runs left half done, judged by the database alone: a recorded
    run still partial after its ``pending_until`` (its process, on whichever host, had
    that long to move the file into place) is moved into place, or, when its partial
    file is not here, forgotten (its period will be exported again). Returns the ids
    of the runs it touched."""
    with store.read(engine) as tx:
        pending = tx.execute(
            select(ExportRun.id, ExportRun.pending_path, ExportRun.path, ExportRun.sha256).where(
                ExportRun.pending_path.is_not(None),
                or_(ExportRun.pending_until.is_(None), ExportRun.pending_until < clock.now()),
            )
        ).all()
    touched = []
    for run_id, pending_path, path, digest in pending:
        tmp, target = Path(pending_path), Path(path)
        if tmp.exists() or (target.exists() and sha256_of(target) == digest):
            _move_into_place(engine, run_id, tmp, target, digest)
        else:
            with store.write(engine) as tx:
                tx.execute(
                    delete(ExportRun).where(ExportRun.id == run_id, ExportRun.pending_path.is_not(None))
                )
        touched.append(run_id)
    return touched


def _pending_files(engine) -> set[str]:
    with store.read(engine) as tx:
        return set(
            tx.execute(select(ExportRun.pending_path).where(ExportRun.pending_path.is_not(None))).scalars()
        )


def run_by_id(run_id: int, *, engine=None) -> ExportRun | None:
    with store.read(engine) as tx:
        return tx.session.get(ExportRun, run_id)


def runs(*, limit: int = 100, engine=None) -> list[ExportRun]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(ExportRun).order_by(ExportRun.id.desc()).limit(limit)))


def clean_partials(out_dir: str | Path, *, engine=None) -> list[Path]:
    """Remove what killed runs left under ``OUT/.partial`` before recording anything:
    files whose writing process is gone (``partials.abandoned``), except the files of
    recorded runs still waiting to be moved into place (:func:`recover` does that)."""
    keep = _pending_files(engine or store.get_engine())
    keep |= {p.replace(".data.", ".manifest.", 1) for p in keep}
    removed = []
    for path in (Path(out_dir) / ".partial").glob("*"):
        if str(path) in keep or not partials.abandoned(path):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
