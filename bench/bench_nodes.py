"""Does a node cost anything? claim+decide and ingest through 1, 2 and 3 API nodes on
one PostgreSQL, alternated in one run.

    python bench/bench_nodes.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench_nodes [--rounds 2]

Each round starts N API processes (``reviewqueue api``, one uvicorn worker each,
``--no-background``) on the same database and drives them with wrk (Debian's ``wrk``;
C, so the load generator is not the limit):

- claim+decide: 8 reviewers, each on one connection to one node (reviewer k on node
  k mod N), claiming and deciding what it claimed; the rate counts decisions stored;
- ingest: 48 keep-alive clients posting single items (``POST /v1/items``), spread
  evenly over the nodes; the rate counts items stored.

The order of N alternates (1, 2, 3, then 3, 2, 1, ...) so that the machine's drift
falls on every N alike; each figure is printed with the load average, and the ratios
against one node are taken within the same round. On one 2-core machine the nodes
share the cores with PostgreSQL: more nodes cannot add CPU, so a ratio at or above 1.0
means a node costs nothing, not that it adds capacity (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_api import WRK_REVIEW_SCRIPT, WRK_SCRIPT, free_port  # noqa: E402
from bench_core import fresh, make_items  # noqa: E402

from reviewqueue import ingest, store, tokens, users  # noqa: E402

KEY = "YmVuY2gtbm9kZXMtc2hhcmUtb25lLWtleS0zMmJ5dGU="


def setup(url: str, pending: int) -> tuple[str, list[str]]:
    engine = fresh(url)
    users.add("poster", role="admin", password="bench-password", engine=engine)
    _, token = tokens.create(f"poster-{uuid.uuid4().hex[:6]}", "admin", user="poster", engine=engine)
    reviewer_tokens = []
    for k in range(8):
        users.add(f"reviewer{k}", password="bench-password", engine=engine)
        reviewer_tokens.append(
            tokens.create(f"rev{k}-{uuid.uuid4().hex[:6]}", "review", user=f"reviewer{k}", engine=engine)[1]
        )
    for start in range(0, pending, 20_000):
        batch = make_items(20_000)
        for it in batch:
            it["external_id"] = f"pending-{start}-{it['external_id']}"
        ingest.submit_many(batch, engine=engine)
    store.dispose(engine)
    return token, reviewer_tokens


def start_nodes(url: str, n: int) -> list[tuple[subprocess.Popen, str]]:
    env = {**os.environ, "REVIEWQUEUE_DATABASE_URL": url, "REVIEWQUEUE_SECRET_KEY": KEY}
    nodes = []
    for _ in range(n):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "reviewqueue.cli", "api", "--port", str(port), "--no-background"],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nodes.append((proc, f"http://127.0.0.1:{port}"))
    for _proc, base in nodes:
        for _ in range(600):
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("a node did not start")
    return nodes


def stop_nodes(nodes) -> None:
    for proc, _ in nodes:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def count(url: str, sql: str) -> int:
    engine = store.make_engine(url, pool=False)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar()
    store.dispose(engine)
    return value


def run_wrk(jobs: list[tuple[str, int, str]], seconds: int) -> float:
    """Run one wrk per (base URL, connections, script) at once; the longest duration."""
    procs = []
    for base, connections, script in jobs:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
        procs.append(
            subprocess.Popen(
                [
                    "wrk",
                    "-t",
                    str(min(connections, 4)),
                    "-c",
                    str(connections),
                    "-d",
                    f"{seconds}s",
                    "-s",
                    f.name,
                    base,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    durations = []
    for p in procs:
        out = p.communicate()[0]
        durations.append(float(re.search(r"requests in ([\d.]+)s", out).group(1)))
    return max(durations)


def claim_decide(url: str, nodes, reviewer_tokens: list[str], seconds: int) -> float:
    before = count(url, "SELECT count(*) FROM reviews")
    jobs = []
    for k, (_, base) in enumerate(nodes):
        mine = reviewer_tokens[k :: len(nodes)]
        script = WRK_REVIEW_SCRIPT.replace("TOKENS", ", ".join(f'"{t}"' for t in mine))
        jobs.append((base, len(mine), script))
    elapsed = run_wrk(jobs, seconds)
    return (count(url, "SELECT count(*) FROM reviews") - before) / elapsed


def post_items(url: str, nodes, token: str, seconds: int) -> float:
    before = count(url, "SELECT count(*) FROM items")
    jobs = []
    for _, base in nodes:
        script = WRK_SCRIPT.replace("TOKEN", token).replace("RUN", uuid.uuid4().hex[:8])
        jobs.append((base, 48 // len(nodes), script))
    elapsed = run_wrk(jobs, seconds)
    return (count(url, "SELECT count(*) FROM items") - before) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("REVIEWQUEUE_BENCH_POSTGRES_URL"), required=False
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--pending", type=int, default=200_000)
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("give --postgres URL (a database this benchmark may empty)")
    url = store.normalise_url(args.postgres)
    token, reviewer_tokens = setup(url, args.pending)
    print(
        f"reviewqueue fleet benchmark: N API nodes (1 uvicorn worker each) on one PostgreSQL, "
        f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
    )
    print(f"{'round':>5} {'nodes':>5} {'claim+decide/s':>15} {'ingest items/s':>15}  load average")
    results: dict[int, list[tuple[float, float]]] = {1: [], 2: [], 3: []}
    for r in range(args.rounds):
        order = (1, 2, 3) if r % 2 == 0 else (3, 2, 1)
        for n in order:
            nodes = start_nodes(url, n)
            try:
                time.sleep(1)
                rt = claim_decide(url, nodes, reviewer_tokens, args.seconds)
                ing = post_items(url, nodes, token, args.seconds)
            finally:
                stop_nodes(nodes)
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            results[n].append((rt, ing))
            print(f"{r + 1:>5} {n:>5} {rt:>15,.0f} {ing:>15,.0f}  {load}")
    print("ratios against one node, per round (claim+decide / ingest):")
    for r in range(args.rounds):
        one = results[1][r]
        parts = [
            f"{n} nodes {results[n][r][0] / one[0]:.2f} / {results[n][r][1] / one[1]:.2f}" for n in (2, 3)
        ]
        print(f"  round {r + 1}: " + ";  ".join(parts))


if __name__ == "__main__":
    main()
