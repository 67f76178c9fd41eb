"""Quality report benchmark: ``quality.report`` over 1,000,000 items (100,000 decided),
beside one plain ``GROUP BY`` over the same rows, in the same run.

    python bench/bench_quality.py [--items 1000000] [--decided 100000] [--postgres URL]

The database is filled through the product's API: ``submit_many`` (threshold 0.52 and a
10% audit sample, three model versions, confidence uniform in [0.5, 1)), then claims and
decisions in claim order until --decided items are decided (the below-threshold ones,
then audits). SQLite databases are kept in --data-dir, since a hundred thousand
decisions take a while.

Printed, best and median of five runs each: the report (with a target, so the
recommendation is computed too), and ``SELECT route, status, count(*) FROM items WHERE
queue = ? GROUP BY route, status``: the least any report over these rows must read.
The target: the report under 1 s and within 3x of the plain query.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import keep_built, reset  # noqa: E402
from sqlalchemy import text  # noqa: E402

from reviewqueue import claims, decisions, ingest, quality, queues, store  # noqa: E402

RUNS = 5


def build(url: str, n: int, decided: int) -> None:
    engine = reset(url)
    queues.create("bench", {"threshold": 0.52, "audit_rate": 0.1}, engine=engine)
    rng = random.Random(5)
    for start in range(0, n, 50_000):
        batch = []
        for i in range(start, min(n, start + 50_000)):
            version = ("v1", "v2", "v3")[i * 3 // n]
            batch.append(
                {
                    "queue": "bench",
                    "external_id": f"q{i}",
                    "input": "question",
                    "output": "answer",
                    "confidence": rng.uniform(0.5, 1.0),
                    "model_version": version,
                }
            )
        ingest.submit_many(batch, engine=engine)
    for _ in range(decided):
        held = claims.claim_next("bench", "rev", engine=engine)
        if held is None:
            break
        right = rng.random() < held.confidence
        verdict = {"verdict": "approve"} if right else {"verdict": "reject", "reason": "incorrect"}
        decisions.decide(held.id, "rev", {**verdict, "seconds_spent": 30.0}, engine=engine)
    store.dispose(engine)


def _built(url: str, items: int, decided: int) -> bool:
    """The PostgreSQL database holds this benchmark's data already (a hundred thousand
    decisions through the domain take a quarter of an hour there)."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            n, done = conn.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE status IN ('approved', 'rejected')) "
                    "FROM items WHERE queue = 'bench' AND external_id LIKE 'q%'"
                )
            ).one()
        return n == items and done >= decided
    except Exception:  # no such table: a fresh database
        return False
    finally:
        store.dispose(engine)


def database(backend: str, args) -> str:
    if backend == "PostgreSQL":
        if not _built(args.postgres, args.items, args.decided):  # kept from the last run?
            build(args.postgres, args.items, args.decided)
        return args.postgres
    keep = Path(args.data_dir) / f"quality-{args.items}-{args.decided}.db"
    if not keep.exists():
        keep.parent.mkdir(parents=True, exist_ok=True)
        work = keep.with_suffix(".building")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
        build(f"sqlite:///{work}", args.items, args.decided)
        keep_built(work, keep)
    return f"sqlite:///{keep}"


def timed(fn) -> list[float]:
    fn()  # warm: the first run reads the table into the page cache
    out = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--decided", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("REVIEWQUEUE_BENCH_POSTGRES_URL"))
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "rq-bench-quality"))
    args = parser.parse_args()
    print(
        f"reviewqueue quality benchmark: {args.items:,} items, {args.decided:,} decided; "
        f"python {sys.version.split()[0]}; load " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    for backend in ("SQLite", "PostgreSQL") if args.postgres else ("SQLite",):
        url = database(backend, args)
        engine = store.make_engine(url)
        if backend == "PostgreSQL":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE items"))

        def plain(engine=engine):
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT route, status, count(*) FROM items WHERE queue = 'bench' GROUP BY route, status"
                    )
                ).all()

        def report(engine=engine):
            quality.report("bench", target_error=0.1, engine=engine)

        base = timed(plain)
        ours = timed(report)
        rep = quality.report("bench", target_error=0.1, engine=engine)
        print(f"\n[{backend}] {rep.items:,} items, {rep.decided:,} decided  (load {os.getloadavg()[0]:.2f})")
        print(
            f"  plain GROUP BY (route, status)   best {min(base):7.1f} ms  median {statistics.median(base):7.1f} ms"
        )
        print(
            f"  quality.report                   best {min(ours):7.1f} ms  median {statistics.median(ours):7.1f} ms"
            f"   {statistics.median(ours) / statistics.median(base):.2f}x the plain query (median)"
        )
        err = rep.auto_accepted_error
        rec = rep.recommendation.threshold if rep.recommendation else rep.recommendation_reason
        print(
            f"  (auto-accepted error {err.estimate:.2%} [{err.low:.2%}, {err.high:.2%}] from {err.audited:,} audits; "
            f"recommended threshold for 10%: {rec})"
        )
        store.dispose(engine)


if __name__ == "__main__":
    main()
