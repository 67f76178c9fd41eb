"""HTTP API benchmark against a real server on this machine.

    python bench/bench_api.py [--workers 2] [--postgres URL]

Starts ``reviewqueue api`` on a fresh database and prints, in one run:
- single-item ``POST /v1/items`` requests/s and latency with 50 concurrent keep-alive
  clients (wrk, from Debian's ``wrk`` package);
- p50/p99 latency of one sequential client, with a kept-alive connection and with a
  fresh connection per request;
- batch ingest items/s (``POST /v1/items/batch``, 1,000 items a request), from one
  client and from four concurrent clients;
- claim+decide round trips/s with 8 concurrent reviewers (wrk with a Lua script that
  decides what each reviewer claimed; Python threads if wrk is missing);
beside the in-process ``submit_many`` and claim+decide rates measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_core import fresh, make_items, pct  # noqa: E402

from reviewqueue import ingest, review, store, tokens, users  # noqa: E402

# Every request posts a new item: wrk's threads each get their own number in setup()
# (seeding the random generator by time gave both threads the same ids: duplicates).
WRK_SCRIPT = """
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
counter = 0
local run = "RUN"
request = function()
  counter = counter + 1
  local body = string.format('{"queue":"bench","external_id":"wrk-%s-%d-%d","input":"Can I get a refund for the Pro plan?","output":"Duplicate charges are refunded in full within 5-7 business days.","confidence":0.42,"model":"bench"}', run, tid, counter)
  return wrk.format("POST", "/v1/items", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, workers: int) -> tuple[subprocess.Popen, str, str, list[str]]:
    engine = fresh(url)
    users.add("bencher", role="admin", password="bench-password", engine=engine)
    _, token = tokens.create(f"bench-{uuid.uuid4().hex[:6]}", "admin", user="bencher", engine=engine)
    reviewer_tokens = []
    for k in range(8):
        users.add(f"reviewer{k}", password="bench-password", engine=engine)
        reviewer_tokens.append(
            tokens.create(f"rev{k}-{uuid.uuid4().hex[:6]}", "review", user=f"reviewer{k}", engine=engine)[1]
        )
    store.dispose(engine)
    port = free_port()
    env = {**os.environ, "REVIEWQUEUE_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewqueue.cli", "api", "--port", str(port), "--workers", str(workers)],
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return proc, base, token, reviewer_tokens
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def wrk_single(base: str, token: str, seconds: int, url: str) -> str:
    if not shutil.which("wrk"):
        return "wrk not installed (apt-get install wrk): skipped"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT.replace("TOKEN", token).replace("RUN", uuid.uuid4().hex[:8]))
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", "50", "-d", f"{seconds}s", "--latency", "-s", f.name, base],
        capture_output=True,
        text=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = {p: re.search(rf"\s{p}%\s+([\d.]+\w+)", out) for p in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sent = re.search(r"(\d+) requests in", out)
    # Every request posted a new external_id: count what was stored, so a figure can
    # never come from answering duplicates.
    engine = store.make_engine(url, pool=False)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM items WHERE external_id LIKE :p"), {"p": "wrk-%"}
        ).scalar()
    store.dispose(engine)
    return (
        f"{float(rps.group(1)):8,.0f} req/s   p50 {lat['50'].group(1)}  p99 {lat['99'].group(1)}"
        f"   non-2xx {errors.group(1) if errors else 0}   {stored:,} items stored for {int(sent.group(1)):,} requests"
    )


def sequential(base: str, token: str, n: int, keep_alive: bool) -> list[float]:
    """One client, one request at a time (http.client: a thin client, so the figure is
    the server's, not the client library's)."""
    import http.client
    import json

    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    times = []
    conn = http.client.HTTPConnection(host, int(port))
    run = uuid.uuid4().hex[:8]
    for i in range(n):
        body = json.dumps(
            {
                "queue": "bench",
                "external_id": f"seq-{run}-{i}",
                "input": "q",
                "output": "a",
                "confidence": 0.3,
            }
        )
        if not keep_alive:
            conn.close()
            conn = http.client.HTTPConnection(host, int(port))
        t = time.perf_counter()
        conn.request("POST", "/v1/items", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 201, r.status
    conn.close()
    return times


def batch_ingest(base: str, token: str, n: int, clients: int = 1) -> float:
    """Post n items in batches of 1,000 from ``clients`` concurrent clients. The bodies
    are encoded before the clock starts (as wrk's are): the figure is the server's, not
    the Python client's JSON encoding (~3 ms a batch here, on the same two cores)."""
    import json

    items = make_items(n)
    for it in items:
        it["external_id"] = f"batch{clients}-" + it["external_id"]
    bodies = iter(
        [json.dumps({"items": items[start : start + 1000]}).encode() for start in range(0, n, 1000)]
    )
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def work():
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            while True:
                with lock:
                    body = next(bodies, None)
                if body is None:
                    return
                r = client.post("/v1/items/batch", content=body)
                assert r.status_code == 200, r.text
                assert len(r.json()["results"]) == 1000

    threads = [threading.Thread(target=work) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return n / (time.perf_counter() - t)


# Eight reviewers, one wrk thread and connection each, each claiming and then deciding
# what it claimed: wrk's Lua keeps the claimed id per thread. A C load generator, so
# the figure is the server's (eight Python client threads topped out first).
WRK_REVIEW_SCRIPT = """
local tokens = {TOKENS}
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("token", tokens[#threads])
end
local item = nil
errors = 0
request = function()
  if item then
    return wrk.format("POST", "/v1/items/" .. item .. "/decision",
      {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, '{"verdict":"approve"}')
  end
  return wrk.format("POST", "/v1/queues/bench/claim", {["Authorization"] = "Bearer " .. token})
end
response = function(status, headers, body)
  if item then
    if status ~= 200 then errors = errors + 1 end
    item = nil
  elseif status == 200 then
    item = body:match('"id":"([^"]+)"')
  end
end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("errors") end
  io.write(string.format("DECISION_ERRORS %d\\n", total))
end
"""


def decided(url: str) -> int:
    engine = store.make_engine(url, pool=False)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM reviews")).scalar()
    store.dispose(engine)
    return count


def claim_decide_wrk(base: str, reviewer_tokens: list[str], seconds: int, url: str) -> tuple[float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_REVIEW_SCRIPT.replace("TOKENS", ", ".join(f'"{t}"' for t in reviewer_tokens)))
    before = decided(url)
    n = len(reviewer_tokens)
    out = subprocess.run(
        ["wrk", "-t", str(n), "-c", str(n), "-d", f"{seconds}s", "-s", f.name, base],
        capture_output=True,
        text=True,
    ).stdout
    secs = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    errors = int(re.search(r"DECISION_ERRORS (\d+)", out).group(1))
    return (decided(url) - before) / secs, errors


def claim_decide(base: str, reviewer_tokens: list[str], seconds: float) -> tuple[float, int]:
    """Without wrk: eight Python threads with httpx (the client side then limits)."""
    reviewers = len(reviewer_tokens)
    done, errors = [0] * reviewers, [0]
    stop = time.monotonic() + seconds

    def work(k: int):
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {reviewer_tokens[k]}"}) as client:
            while time.monotonic() < stop:
                r = client.post("/v1/queues/bench/claim")
                if r.status_code == 204:
                    return
                r2 = client.post(f"/v1/items/{r.json()['id']}/decision", json={"verdict": "approve"})
                if r2.status_code != 200:
                    errors[0] += 1
                done[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(reviewers)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.perf_counter() - t), errors[0]


def in_process_reviews(engine, seconds: float) -> float:
    """The domain's own claim+decide rate, one reviewer in this process: the API's
    baseline, measured in the same run (this machine's speed drifts by the hour)."""
    t = time.perf_counter()
    done = 0
    while time.perf_counter() - t < seconds:
        item = review.claim_next("bench", "inproc", engine=engine)
        review.decide_item(item.id, "inproc", {"verdict": "approve"}, engine=engine)
        done += 1
    return done / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--postgres", default=os.environ.get("REVIEWQUEUE_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    targets = [("SQLite", f"sqlite:///{tempfile.mkdtemp(prefix='rq-api-')}/api.db")]
    if args.postgres:
        targets.append(("PostgreSQL", store.normalise_url(args.postgres)))
    print(
        f"reviewqueue API benchmark: uvicorn with {args.workers} worker(s); python {sys.version.split()[0]}"
    )
    for label, url in targets:
        inproc_engine = fresh(url.replace("api.db", "inproc.db") if label == "SQLite" else url)
        t = time.perf_counter()
        ingest.submit_many(make_items(20_000), engine=inproc_engine)
        inproc = 20_000 / (time.perf_counter() - t)
        inproc_rt = in_process_reviews(inproc_engine, seconds=3)
        store.dispose(inproc_engine)
        proc, base, token, reviewer_tokens = start_server(url, args.workers)
        try:
            print(f"[{label}] in-process submit_many               {inproc:8,.0f} items/s")
            print(f"[{label}] in-process claim+decide, 1 thread    {inproc_rt:8,.0f} round trips/s")
            print(
                f"[{label}] POST /v1/items, 50 clients (wrk)      {wrk_single(base, token, args.seconds, url)}"
            )
            ka = sequential(base, token, 500, keep_alive=True)
            print(
                f"[{label}] POST /v1/items, 1 client, keep-alive  p50 {pct(ka, 50):.2f} ms  p99 {pct(ka, 99):.2f} ms"
            )
            fresh_conn = sequential(base, token, 300, keep_alive=False)
            print(
                f"[{label}] POST /v1/items, 1 client, new conn.   p50 {pct(fresh_conn, 50):.2f} ms  "
                f"p99 {pct(fresh_conn, 99):.2f} ms"
            )
            for clients in (1, 4):
                rate = batch_ingest(base, token, 20_000, clients)
                print(
                    f"[{label}] POST /v1/items/batch, {clients} client(s)     {rate:8,.0f} items/s   "
                    f"({rate / inproc:.0%} of in-process)"
                )
            if shutil.which("wrk"):
                rt, errors = claim_decide_wrk(base, reviewer_tokens, args.seconds, url)
                how = "wrk"
            else:
                rt, errors = claim_decide(base, reviewer_tokens, args.seconds)
                how = "httpx"
            print(
                f"[{label}] claim+decide, 8 reviewers ({how})      {rt:8,.0f} round trips/s   errors {errors}   "
                f"({rt / inproc_rt:.0%} of in-process)"
            )
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
