"""Large exports in parallel slices.

One process tops out near what SQLite needs just to read the rows, because building
a Python object per value holds the GIL. Large exports are therefore cut into slices
of about SLICE_ROWS decisions (by decided_at, so slices are in file order); worker
processes each read and convert a slice into a part file under OUT/.partial, and this
process appends the parts in order. The data file is the same either way (tests
compare the bytes).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from .. import clock, store
from ..models import Item
from . import partials
from .columns import JSON_AS_TEXT
from .periods import Period
from .rows import read_rows
from .writers import Writer

SLICE_ROWS = 50_000
WORKER_CHUNK = 2_000


def cut(engine, queue: str, period: Period) -> list[tuple[datetime, datetime]]:
    """Cut the period every SLICE_ROWS final decisions of the queue (an index walk)."""

    def first(after, *, offset: int, inclusive: bool):
        return (
            select(Item.decided_at)
            .where(
                Item.queue == queue,
                Item.decided_at < period.until,
                Item.decided_at >= after if inclusive else Item.decided_at > after,
            )
            .order_by(Item.decided_at)
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


def write_slice(url: str, fmt: str, queue: str, since: datetime, until: datetime, verdicts, path: str):
    """In a worker process: one slice to a part file. Returns its rows and verdicts."""
    engine = store.make_engine(url, pool=False)
    try:
        part = Writer(Path(path), fmt, part=True)
        try:
            # Smaller chunks, one ahead: several workers hold chunks at once, and the
            # export's memory is the sum of all of them.
            for chunk in read_rows(
                engine,
                queue,
                Period("slice", since, until, "range"),
                verdicts,
                json_as_text=JSON_AS_TEXT[fmt],
                chunk=WORKER_CHUNK,
                ahead=1,
            ):
                part.write(chunk)
        finally:
            part.close(sync=False)
        return part.rows, dict(part.verdicts)
    finally:
        store.dispose(engine)


def _die_with_parent() -> None:
    """In a worker, before it starts: the kernel kills it when the exporting process
    dies, however it dies (a worker busy with a slice would not notice its stdin close)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: stdin closing still stops an idle worker
        pass


class Workers:
    """``python -m reviewqueue.export_worker`` processes, one JSON task per line on
    stdin and one JSON answer per line on stdout. Plain subprocesses rather than
    multiprocessing: they start clean (no copy of this process's threads and locks) and
    never re-import the caller's ``__main__`` script."""

    def __init__(self, count: int):
        import subprocess
        import sys

        # This copy of reviewqueue, whether installed or run from a checkout.
        here = str(Path(__file__).resolve().parents[2])
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
                preexec_fn=_die_with_parent,
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


def write_slices(
    writer: Writer, engine, queue: str, fmt: str, slices, verdicts, partial_dir: Path, workers: int
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    run = uuid.uuid4().hex[:8]  # two exports of one queue in one process must not share parts
    parts = [partial_dir / f"{queue}.{run}.part{k}.{partials.suffix()}" for k in range(len(slices))]
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

    import pyarrow as pa

    # As in the workers: Arrow's default allocator keeps what it freed for reuse, which
    # here only adds to the export's peak memory.
    arrow_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    pool = Workers(min(workers, len(slices)))
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
        pa.set_memory_pool(arrow_pool)
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
            rows, counts = write_slice(
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
