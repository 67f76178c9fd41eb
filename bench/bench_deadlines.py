"""Waiting for a human: how soon does an app hear a decision? Long poll against polling
once a second, in one run, on one API process.

    python bench/bench_deadlines.py [--waiters 1000] [--postgres URL]

One ``reviewqueue api`` process (SQLite in a temporary folder, or the PostgreSQL
database given) and ``--waiters`` apps, each posting one item and waiting for its
verdict, all at once (asyncio, one connection each):

- long poll: ``GET /v1/items/{id}?wait=60`` again until final (``Client.review`` does
  this);
- polling: ``GET /v1/items/{id}`` every second (what apps did before).

A reviewer decides the items one by one at a steady pace over about 20 seconds. For
each item: decided (the decision's response received) to heard (the waiter's answer
received). The API's RSS is printed with every waiter waiting and after, and the
requests each mode made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_api import free_port  # noqa: E402

from reviewqueue import queues, store, tokens, users  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup(url: str) -> tuple[str, str]:
    engine = store.get_engine(url)
    store.upgrade(engine)
    name = f"wait{uuid.uuid4().hex[:6]}"
    queues.create(name, {"threshold": 0.8, "audit_rate": 0.0, "lease_seconds": 600}, engine=engine)
    if users.get("poster", engine=engine) is None:
        users.add("poster", role="admin", password="bench-password", engine=engine)
    _, token = tokens.create(f"poster-{uuid.uuid4().hex[:6]}", "admin", user="poster", engine=engine)
    store.dispose(engine)
    return name, token


def start_api(url: str, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewqueue.cli", "api", "--port", str(port), "--no-background"],
        env={**env, "REVIEWQUEUE_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the API did not start")


async def run_mode(base: str, token: str, queue: str, waiters: int, mode: str, pid: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=waiters + 10, max_keepalive_connections=waiters + 10)
    decided: dict[str, float] = {}
    heard: dict[str, float] = {}
    requests = {"n": 0, "busy": 0}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=90) as http:
        ids = []
        for start in range(0, waiters, 500):
            batch = [
                {
                    "queue": queue,
                    "input": f"q{i}",
                    "output": "a",
                    "confidence": 0.2,
                    "external_id": f"{mode}-{i}",
                }
                for i in range(start, min(waiters, start + 500))
            ]
            resp = await http.post("/v1/items/batch", json={"items": batch})
            ids += [r["id"] for r in resp.json()["results"]]

        async def wait(n: int, item_id: str) -> None:
            await asyncio.sleep(n * 2.0 / len(ids))  # apps start over 2 s, not in one instant
            while True:
                requests["n"] += 1
                if mode == "long poll":
                    resp = await http.get(f"/v1/items/{item_id}", params={"wait": 60})
                else:
                    resp = await http.get(f"/v1/items/{item_id}")
                body = resp.json()
                if resp.status_code == 503:  # busy: what the client does (retry after Retry-After)
                    requests["busy"] += 1
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                    continue
                if resp.status_code != 200:
                    raise SystemExit(f"{mode}: HTTP {resp.status_code} {body}")
                if body["status"] in ("approved", "corrected", "rejected"):
                    heard[item_id] = time.perf_counter()
                    return
                if mode != "long poll":
                    await asyncio.sleep(1.0)

        tasks = [asyncio.create_task(wait(n, i)) for n, i in enumerate(ids)]
        await asyncio.sleep(4)  # every waiter waiting
        waiting_rss = rss_mb(pid)
        pace = 20.0 / len(ids)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as reviewer:
            for _ in ids:
                claimed = (await reviewer.post(f"/v1/queues/{queue}/claim")).json()
                await reviewer.post(f"/v1/items/{claimed['id']}/decision", json={"verdict": "approve"})
                decided[claimed["id"]] = time.perf_counter()
                await asyncio.sleep(pace * random.uniform(0.5, 1.5))
        await asyncio.gather(*tasks)
    lat = sorted((heard[i] - decided[i]) * 1000 for i in ids)
    return {
        "p50": statistics.median(lat),
        "p99": lat[int(0.99 * (len(lat) - 1))],
        "max": lat[-1],
        "requests": requests["n"],
        "busy": requests["busy"],
        "rss_waiting": waiting_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--postgres", help="a PostgreSQL URL to run on instead of SQLite")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-deadlines-")
    url = args.postgres or f"sqlite:///{tmp}/bench.db"
    env = {
        **os.environ,
        "REVIEWQUEUE_SECRET_KEY_FILE": f"{tmp}/secret.key",
        "REVIEWQUEUE_COUNTS_MAX_AGE": "2",
    }
    os.environ.update(env)
    print(
        f"# bench_deadlines: {args.waiters} waiters, {'PostgreSQL' if args.postgres else 'SQLite'}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results = {}
    for mode in ("long poll", "polling 1 s", "long poll"):  # long poll again: drift shows
        queue, token = setup(url)
        proc, base = start_api(url, env)
        try:
            before = rss_mb(proc.pid)
            r = asyncio.run(run_mode(base, token, queue, args.waiters, mode, proc.pid))
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        results.setdefault(mode, []).append(r)
        print(
            f"{mode:12s}  decided -> heard  p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  max {r['max']:7.1f} ms"
            f"  | {r['requests']:6d} requests ({r['busy']} answered 503)  | API RSS {before:.0f} MB idle, {r['rss_waiting']:.0f} MB with "
            f"{args.waiters} waiting, {after:.0f} MB after"
        )
    poll = results["polling 1 s"][0]
    for r in results["long poll"]:
        print(
            f"long poll / polling: p50 {r['p50'] / poll['p50']:.3f}x, p99 {r['p99'] / poll['p99']:.3f}x, "
            f"requests {r['requests'] / poll['requests']:.3f}x"
        )


if __name__ == "__main__":
    main()
