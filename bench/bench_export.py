"""Export benchmark: 1,000,000 decided items to Parquet, JSONL and CSV, rows/s and peak
memory, beside the raw speed of reading the same rows with plain sqlite3, in one run.

    python bench/bench_export.py [--rows 1000000] [--data-dir DIR]

The database is filled the way the product fills it (submit_many, then every item
claimed and decided through the domain API, in claim order, with its events) and kept
in --data-dir, since a million decisions take a while to make.

Each export runs in a fresh child process, so one export's memory cannot hide
another's. Its peak memory is sampled 20 times a second over the child and its worker
processes and printed two ways: summed RSS (a page shared by two processes counts
twice: the cautious figure, and the one the < 500 MB goal is stated in) and summed PSS
(shared pages split between the processes sharing them). Parquet is measured with the
default workers and in one process.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reviewqueue import claims, clock, decisions, export, ingest, queues, store  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import keep_built  # noqa: E402

from reviewqueue.settings import get_settings  # noqa: E402

WEEK = "2026-W47"


def _fill(engine, rng, words, n: int) -> None:
    """n items through ``submit_many``, in batches of 50,000."""
    for start in range(0, n, 50_000):
        batch = []
        for i in range(start, min(n, start + 50_000)):
            out = " ".join(rng.choices(words, k=40))
            if i % 4 == 0:  # some outputs have line breaks and quotes (escaped in JSON)
                out = out.replace(" refund ", '\n"refund"\n', 1)
            batch.append(
                {
                    "queue": "bench",
                    "external_id": f"e{i}",
                    "input": " ".join(rng.choices(words, k=20)),
                    "output": out,
                    "confidence": rng.random() * 0.8,
                    "model": "m",
                    "model_version": "1",
                    "metadata": {"i": i},
                }
            )
        ingest.submit_many(batch, engine=engine)


def build(path: Path, n: int) -> None:
    """Fill a database the way the product fills it: n items through ``submit_many``,
    then each claimed and decided through the domain API (events, reviews, outbox and
    all), in claim order (lowest confidence first, not the order of arrival), with the
    clock stepping half a second a decision across the week."""
    engine = store.make_engine(f"sqlite:///{path}")
    store.upgrade(engine)
    queues.create(
        "bench", {"audit_rate": 0.0, "threshold": 0.9, "reject_reasons": ["incorrect"]}, engine=engine
    )
    rng = random.Random(3)
    words = "the refund policy says duplicate charges are returned within five business days".split()
    base = datetime(2026, 11, 17, tzinfo=UTC)
    now = [base - timedelta(days=1)]  # items arrive the day before the decisions start
    with clock.travelling(lambda: now[0]):
        _fill(engine, rng, words, n)
    reviewers = ("ann", "bob", "cy", "dee")
    with clock.travelling(lambda: now[0]):  # decisions spread over the week, as in life
        for i in range(n):
            now[0] = base + timedelta(milliseconds=i * 500)
            who = reviewers[i % len(reviewers)]
            held = claims.claim_next("bench", who, engine=engine)
            verdict = rng.choice(("approve", "approve", "correct", "reject"))
            decision = {"verdict": verdict, "seconds_spent": 12.5}
            if verdict == "correct":
                decision["final_output"] = held.output + " corrected"
            elif verdict == "reject":
                decision["reason"] = "incorrect"
            decisions.decide(held.id, who, decision, engine=engine)
    store.dispose(engine)


def database(n: int, data_dir: str) -> Path:
    """The benchmark database, built once per size and kept in data_dir (a million
    decisions through the domain take a while)."""
    keep = Path(data_dir) / f"export-{n}.db"
    if not keep.exists():
        keep.parent.mkdir(parents=True, exist_ok=True)
        work = keep.with_suffix(".building")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
        build(work, n)
        keep_built(work, keep)
    return keep


def _tree_memory_mb(root: int) -> tuple[float, float]:
    """(RSS, PSS) of a process and all its descendants (export workers), summed, in MB.

    RSS counts a page shared by two processes twice; PSS splits it between them. A
    container's limit charges each page once, so the truth lies between the two:
    summed RSS is the cautious figure and the one the goal is stated in."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    rss = pss = 0.0
    for pid in tree:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            rss += int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024
            pss += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024
        except (OSError, AttributeError, ValueError):
            continue
    return rss, pss


def _child_export(url: str, out: str, fmt: str, workers: int, q) -> None:
    import threading

    peak, done = [0.0, 0.0], threading.Event()

    def sample():  # the workers' memory counts too: sum the process tree, 20 times a second
        while not done.wait(0.05):
            rss, pss = _tree_memory_mb(os.getpid())
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

    threading.Thread(target=sample, daemon=True).start()
    engine = store.make_engine(url)
    t = time.perf_counter()
    [r] = export.export(out, fmt=fmt, week_spec=WEEK, engine=engine, workers=workers)
    secs = time.perf_counter() - t
    done.set()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put((r.rows, secs, max(peak[0], own), peak[1]))


def _child_raw(path: str, q) -> None:
    """The same rows, in the same order, with the period in the same form the export
    binds it, fetched as plain tuples and dropped."""
    period = export.week(WEEK)
    t = time.perf_counter()
    conn = sqlite3.connect(path)
    n = 0
    cursor = conn.execute(
        "SELECT i.*, r.* FROM reviews r JOIN items i ON i.id = r.item_id WHERE r.undone_at IS NULL "
        "AND r.queue = 'bench' AND r.created_at >= ? AND r.created_at < ? ORDER BY r.created_at, r.item_id",
        [p.strftime("%Y-%m-%d %H:%M:%S.%f") for p in (period.since, period.until)],
    )
    while rows := cursor.fetchmany(10_000):
        n += len(rows)
    q.put((n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "rq-bench-export"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rq-export-"))
    t = time.perf_counter()
    path = database(args.rows, args.data_dir)
    print(
        f"reviewqueue export benchmark: {args.rows:,} items decided through the domain API "
        f"({path}, ready in {time.perf_counter() - t:.0f} s); load "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    raw_n, raw_secs, rss = run(_child_raw, str(path))
    print(
        f"{'raw sqlite3 read of the same rows':<40} {raw_n / raw_secs:10,.0f} rows/s   peak RSS {rss:6.0f} MB"
    )
    workers = get_settings().export_workers
    for fmt, n_workers in (("parquet", workers), ("parquet", 1), ("jsonl", workers), ("csv", workers)):
        n, secs, rss, pss = run(_child_export, f"sqlite:///{path}", str(tmp / "out"), fmt, n_workers)
        label = f"export --format {fmt} --workers {n_workers}"
        print(
            f"{label:<40} {n / secs:10,.0f} rows/s   peak RSS {rss:6.0f} MB  PSS {pss:6.0f} MB   "
            f"({n:,} rows, {secs:.1f} s; {n / secs / (raw_n / raw_secs):4.0%} of the raw read)"
        )


if __name__ == "__main__":
    main()
