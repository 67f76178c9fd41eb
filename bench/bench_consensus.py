"""Claim+decide latency with several reviewers per item, beside one reviewer per item.

    python bench/bench_consensus.py                      # SQLite, 100,000 and 1,000,000 pending
    python bench/bench_consensus.py --sizes 100000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

One database holds two queues with the same N pending items: ``one`` needs one decision
per item, ``three`` needs three from distinct reviewers (majority). Five reviewers take
turns; each turn is one in-process claim plus decide, timed. Blocks of cycles alternate
between the two queues, so both see the same machine load, and the figures are printed
side by side with their ratio. On ``three`` every claim also checks that the reviewer has
not decided the item already (sequential leases: docs/architecture.md), and every third
decision settles an item (consensus, one final decision, one webhook row).

The SQLite database of each size is built once through the domain API and kept in
``--data-dir`` (default /tmp/rq-bench-consensus); each run works on a copy.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_core import keep_built, make_items, pct, reset  # noqa: E402

from reviewqueue import ingest, queues, review, store  # noqa: E402

REVIEWERS = [f"reviewer-{n}" for n in range(5)]
BLOCK = 100


def build(url: str, n: int) -> None:
    engine = reset(url)
    queues.create("one", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
    queues.create("three", {"threshold": 0.8, "audit_rate": 0.0, "reviews_required": 3}, engine=engine)
    for queue in ("one", "three"):
        items = make_items(n, queue)
        for start in range(0, n, 50_000):
            ingest.submit_many(items[start : start + 50_000], engine=engine)
        del items
    store.dispose(engine)


def sqlite_db(data_dir: Path, n: int) -> str:
    keep = data_dir / f"consensus-{n}.db"
    if not keep.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        work = data_dir / f"consensus-{n}.building"
        for p in data_dir.glob(f"consensus-{n}.building*"):
            p.unlink()
        print(f"  building {keep} ({2 * n:,} items, once) ...", flush=True)
        build(f"sqlite:///{work}", n)
        keep_built(work, keep)
    run = data_dir / f"consensus-{n}.run.db"
    for p in data_dir.glob(f"consensus-{n}.run.db*"):
        p.unlink()
    shutil.copyfile(keep, run)
    return f"sqlite:///{run}"


def cycle(engine, queue: str, reviewer: str) -> float:
    t = time.perf_counter()
    item = review.claim_next(queue, reviewer, engine=engine)
    review.decide(item.id, reviewer, {"verdict": "approve"}, engine=engine)
    return (time.perf_counter() - t) * 1000


def measure(engine, cycles: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"one": [], "three": []}
    turn = 0
    for _ in range(50):  # warm both paths
        cycle(engine, "one", REVIEWERS[turn % 5])
        cycle(engine, "three", REVIEWERS[turn % 5])
        turn += 1
    while len(times["three"]) < cycles:
        for queue in ("one", "three"):
            for _ in range(BLOCK):
                times[queue].append(cycle(engine, queue, REVIEWERS[turn % 5]))
                turn += 1
    return times


def report(label: str, times: dict[str, list[float]]) -> None:
    one, three = times["one"], times["three"]
    p50 = (pct(one, 50), pct(three, 50))
    p99 = (pct(one, 99), pct(three, 99))
    print(
        f"{label:<36} reviews_required=1: p50 {p50[0]:6.2f} ms  p99 {p99[0]:6.2f} ms   "
        f"reviews_required=3: p50 {p50[1]:6.2f} ms  p99 {p99[1]:6.2f} ms   "
        f"ratio p50 {p50[1] / p50[0]:4.2f}x  p99 {p99[1] / p99[0]:4.2f}x   ({len(three):,} cycles each; "
        f"load {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="pending items per queue, comma-separated")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("REVIEWQUEUE_BENCH_POSTGRES_URL"))
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/rq-bench-consensus"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"claim+decide, one in-process reviewer at a time, {len(REVIEWERS)} reviewers taking turns, "
        f"{args.cycles:,} cycles per queue; python {sys.version.split()[0]}"
    )
    for n in sizes:
        url = sqlite_db(args.data_dir, n)
        engine = store.make_engine(url)
        gc.collect()
        gc.freeze()
        report(f"SQLite, {n:,} pending per queue", measure(engine, args.cycles))
        store.dispose(engine)
        for p in args.data_dir.glob(f"consensus-{n}.run.db*"):
            p.unlink()
        if args.postgres:
            print(f"  building PostgreSQL ({2 * n:,} items) ...", flush=True)
            build(args.postgres, n)
            engine = store.make_engine(args.postgres)
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
            gc.collect()
            report(f"PostgreSQL, {n:,} pending per queue", measure(engine, args.cycles))
            store.dispose(engine)


if __name__ == "__main__":
    main()
