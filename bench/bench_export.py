"""Export benchmark: 1,000,000 decided items to Parquet and JSONL, rows/s and peak RSS,
beside the raw speed of reading the same rows with plain sqlite3, in one run.

    python bench/bench_export.py [--rows 1000000]

Each export runs in a fresh child process, so one export's memory cannot hide
another's; its peak memory is the proportional set size (PSS: shared pages split
between the processes sharing them) summed over the child and its worker processes,
sampled 20 times a second, or the child's own peak RSS if that is larger. Parquet is measured with the default workers and in one process.
"""

from __future__ import annotations

import argparse
import json
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

from reviewqueue import export, queues, store, textdiff  # noqa: E402
from reviewqueue.ids import uuid7  # noqa: E402
from reviewqueue.settings import get_settings  # noqa: E402

WEEK = "2026-W47"


def build(path: Path, n: int) -> None:
    """Write n decided items (and their reviews) straight into a migrated database."""
    engine = store.make_engine(f"sqlite:///{path}")
    store.upgrade(engine)
    queues.create("bench", {"audit_rate": 0.0}, engine=engine)
    engine.dispose()
    rng = random.Random(3)
    words = "the refund policy says duplicate charges are returned within five business days".split()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    base = datetime(2026, 11, 17, tzinfo=UTC)
    for start in range(0, n, 50_000):
        items, reviews = [], []
        for i in range(start, min(n, start + 50_000)):
            item_id = uuid7()
            # Decisions spread over the week, as in life (and so the export's sort is real).
            stamp = (base + timedelta(milliseconds=i * 500)).strftime("%Y-%m-%d %H:%M:%S.%f")
            out = " ".join(rng.choices(words, k=40))
            if i % 4 == 0:  # some outputs have line breaks and quotes (escaped in JSON)
                out = out.replace(" refund ", '\n"refund"\n', 1)
            verdict = rng.choice(("approve", "approve", "correct", "reject"))
            final = out if verdict == "approve" else (out + " corrected" if verdict == "correct" else None)
            items.append(
                (
                    item_id,
                    "bench",
                    f"e{i}",
                    json.dumps(" ".join(rng.choices(words, k=20))),
                    json.dumps(out),
                    rng.random() * 0.8,
                    None,
                    "m",
                    "1",
                    "[]",
                    json.dumps({"i": i}),
                    0,
                    {"approve": "approved", "correct": "corrected", "reject": "rejected"}[verdict],
                    "below_threshold",
                    item_id,
                    stamp,
                    stamp,
                    stamp,
                )
            )
            reviews.append(
                (
                    item_id,
                    "bench",
                    "ann",
                    verdict,
                    json.dumps(final) if final else None,
                    "incorrect" if verdict == "reject" else None,
                    textdiff.decision_distance(verdict, out, final),
                    stamp,
                )
            )
        conn.executemany(
            "INSERT INTO items (id, queue, external_id, input, output, confidence, predicted_label, model, model_version,"
            " context, metadata, priority, status, route, claim_order, created_at, updated_at, decided_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            items,
        )
        conn.executemany(
            "INSERT INTO reviews (item_id, queue, reviewer, verdict, final_output, reason, edit_distance, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            reviews,
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # read from the database file, as a settled system does
    conn.close()


def _tree_rss_mb(root: int) -> float:
    """Memory of a process and all its descendants (export workers), in MB (PSS)."""
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
    total = 0.0
    for pid in tree:
        try:  # proportional set size: pages shared between the processes count once
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            total += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024
        except (OSError, AttributeError, ValueError):
            continue
    return total


def _child_export(url: str, out: str, fmt: str, workers: int, q) -> None:
    import threading

    peak, done = [0.0], threading.Event()

    def sample():  # the workers' memory counts too: sum the process tree, 20 times a second
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_rss_mb(os.getpid()))

    threading.Thread(target=sample, daemon=True).start()
    engine = store.make_engine(url)
    t = time.perf_counter()
    [r] = export.export(out, fmt=fmt, week_spec=WEEK, engine=engine, workers=workers)
    secs = time.perf_counter() - t
    done.set()
    q.put((r.rows, secs, max(peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


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
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rq-export-"))
    path = tmp / "export.db"
    t = time.perf_counter()
    build(path, args.rows)
    print(
        f"reviewqueue export benchmark: {args.rows:,} decided items (built in {time.perf_counter() - t:.0f} s)"
    )
    n, secs, rss = run(_child_raw, str(path))
    print(f"{'raw sqlite3 read of the same rows':<40} {n / secs:10,.0f} rows/s   peak memory {rss:6.0f} MB")
    workers = get_settings().export_workers
    for fmt, n_workers in (("parquet", workers), ("parquet", 1), ("jsonl", workers), ("csv", workers)):
        n, secs, rss = run(_child_export, f"sqlite:///{path}", str(tmp / "out"), fmt, n_workers)
        label = f"export --format {fmt} --workers {n_workers}"
        print(
            f"{label:<40} {n / secs:10,.0f} rows/s   peak memory {rss:6.0f} MB   ({n:,} rows, {secs:.1f} s)"
        )


if __name__ == "__main__":
    main()
