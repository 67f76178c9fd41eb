"""Review-app benchmark in a real browser: Debian's Chromium driven by Playwright, against
the app started as users start it, at 100,000 and 1,000,000 pending items.

    python bench/bench_ui.py [--pending 100000 1000000] [--postgres URL] [--sessions 3] [--decisions 20]

For each database and size it prints, p50 and p95 over every browser session:
- decision -> next item painted: from the key press (A) until the next item's text is on
  the page (polled every animation frame, not Playwright's coarser expect() retries),
  after the first three presses of each session (as for the bare page);
- sign-in -> first item painted; page switches (Browse, Dashboard, back to Review), the
  first visit of a fresh browser (which loads the page's scripts) and a second one;
- the same decision measured server-side by AppTest (one script run, what an earlier
  version of this benchmark reported alone), to show what the browser adds;
- beside them, a bare Streamlit page (one button that changes one text) measured in the
  same run: the framework's own round trip, and the ratio of ours to it;
- each query the pages run, timed at this size, beside its plan.

The database is built through the product's own API (submit_many; a few thousand
decisions through claim and decide, so the dashboard has days to show). SQLite
databases are kept in --data-dir between runs (a million items take a minute and a
half to build); the load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import make_items, pct, reset  # noqa: E402

from reviewqueue import claims, decisions, ingest, queues, store, users  # noqa: E402
from tests.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

BARE = ROOT / "bench" / "bare_app.py"
DECIDED = 3000
#: Presses not counted at the start of each browser session (as for the bare page).
WARM_UP = 3
ITEM_TEXT = """(old) => {
  const e = [...document.querySelectorAll('[data-testid="stText"]')].find(x => x.innerText.startsWith('Item '));
  return e && e.innerText !== old ? e.innerText : false;
}"""


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def build(url: str, pending: int) -> None:
    engine = reset(url)
    queues.create(
        "bench",
        {"audit_rate": 0.0, "threshold": 0.8, "lease_seconds": 600, "description": "Benchmark queue."},
        engine=engine,
    )
    users.add("bencher", password="bench-password", engine=engine)
    total = pending + DECIDED
    for start in range(0, total, 50_000):
        items = make_items(min(50_000, total - start))
        for i, it in enumerate(items):
            it["external_id"] = f"b-{start + i}"
        ingest.submit_many(items, engine=engine)
    for _ in range(DECIDED):  # some history for the dashboard, decided the way reviewers decide
        held = claims.claim_next("bench", "someone", engine=engine)
        decisions.decide(held.id, "someone", {"verdict": "approve"}, engine=engine)
    store.dispose(engine)


def database(backend: str, pending: int, args) -> str:
    if backend == "PostgreSQL":
        build(args.postgres, pending)
        return args.postgres
    keep = Path(args.data_dir) / f"ui-{pending}.db"
    if not keep.exists():
        print(f"  building a SQLite database with {pending:,} pending items in {keep} ...", flush=True)
        build(f"sqlite:///{keep}.tmp", pending)
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{keep}.tmp{suffix}").exists():
                os.replace(f"{keep}.tmp{suffix}", f"{keep}{suffix}")
    work = Path(tempfile.mkdtemp(prefix="rq-ui-")) / "ui.db"
    for suffix in ("", "-wal"):
        if Path(f"{keep}{suffix}").exists():
            shutil.copy(f"{keep}{suffix}", f"{work}{suffix}")
    return f"sqlite:///{work}"


def serve(script: Path, url: str, port: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "REVIEWQUEUE_DATABASE_URL": url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.headless=true",
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            "--browser.gatherUsageStats=false",
            "--client.toolbarMode=minimal",
            "--runner.magicEnabled=false",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{script.name} did not start")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_round_trip(browser, presses: int) -> list[float]:
    port = free_port()
    proc = serve(BARE, "sqlite://", port)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}")
        old = page.wait_for_function(ITEM_TEXT, arg="", polling="raf", timeout=60_000).json_value()
        page.wait_for_timeout(500)
        times = []
        for _ in range(presses + 3):
            t = time.perf_counter()
            page.keyboard.press("a")
            old = page.wait_for_function(ITEM_TEXT, arg=old, polling="raf", timeout=60_000).json_value()
            times.append((time.perf_counter() - t) * 1000)
        page.close()
        return times[3:]  # the first presses warm the connection
    finally:
        stop(proc)


def review_sessions(browser, url: str, sessions: int, decisions_per: int) -> dict[str, list[float]]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    port = free_port()
    proc = serve(ROOT / "review_app.py", url, port)
    out = {"decision": [], "sign-in": [], "lost keys": []}
    for name in ("Browse", "Dashboard", "Review"):
        out[f"{name} (first)"], out[f"{name} (again)"] = [], []
    try:
        for _ in range(sessions):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_label("Username").fill("bencher")
            page.get_by_role("textbox", name="Password").fill("bench-password")
            t = time.perf_counter()
            page.get_by_role("button", name="Sign in").click()
            old = page.wait_for_function(ITEM_TEXT, arg="", polling="raf", timeout=60_000).json_value()
            out["sign-in"].append((time.perf_counter() - t) * 1000)
            page.get_by_role("button", name="Approve · A").wait_for(state="visible")
            page.wait_for_timeout(1000)  # the shortcuts are registered once the page has settled
            for n in range(decisions_per + WARM_UP):
                t = time.perf_counter()
                page.keyboard.press("a")
                try:
                    old = page.wait_for_function(
                        ITEM_TEXT, arg=old, polling="raf", timeout=10_000
                    ).json_value()
                except PlaywrightTimeout:  # the key did nothing: count it, and go on
                    out["lost keys"].append(1)
                    page.wait_for_timeout(1000)
                    old = page.wait_for_function(
                        ITEM_TEXT, arg="", polling="raf", timeout=60_000
                    ).json_value()
                    continue
                if n >= WARM_UP:
                    out["decision"].append((time.perf_counter() - t) * 1000)
            for visit in ("first", "again"):
                for name, ready in (
                    ("Browse", '[data-testid="stDataFrame"]'),
                    ("Dashboard", '[data-testid="stVegaLiteChart"]'),
                    ("Review", None),
                ):
                    t = time.perf_counter()
                    page.get_by_role("link", name=name).click()
                    if ready:
                        page.wait_for_selector(ready, state="visible", timeout=60_000)
                    else:
                        page.wait_for_function(ITEM_TEXT, arg="", polling="raf", timeout=60_000)
                    out[f"{name} ({visit})"].append((time.perf_counter() - t) * 1000)
                    page.wait_for_timeout(500)
            context.close()
    finally:
        stop(proc)
    return out


def apptest_decisions(url: str, n: int) -> list[float]:
    """The same decision timed server-side only: one AppTest script run."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["REVIEWQUEUE_DATABASE_URL"] = url
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    st.cache_resource.clear()

    def page():
        from reviewqueue.ui import review_page

        review_page.render()

    at = AppTest.from_function(page, default_timeout=120)
    at.session_state["user"] = {
        "name": "bencher",
        "role": "reviewer",
        "since": time.time(),
        "seen": time.time(),
    }
    at.session_state["rq_queue"] = at.session_state["rq_queue_pick"] = "bench"
    at.run()
    times = []
    for _ in range(n):
        approve = next(b for b in at.button if b.label.startswith("Approve"))
        t = time.perf_counter()
        approve.click().run()
        times.append((time.perf_counter() - t) * 1000)
    assert not at.exception, at.exception
    return times


def queries(url: str) -> None:
    """Each query a page run makes, timed here, beside its plan."""
    from sqlalchemy import text

    from reviewqueue import items, metrics

    engine = store.make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "

    def plan(sql: str, params: dict) -> str:
        with engine.connect() as conn:
            rows = conn.execute(text(explain + sql), params).all()
        return " | ".join(str(r[-1]) for r in rows)[:160]

    def timed(fn, n=5) -> float:
        best = 1e9
        for _ in range(n):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best * 1000

    def claim_and_decide():
        held = claims.claim_next("bench", "planner", engine=engine)
        decisions.decide(held.id, "planner", {"verdict": "approve"}, engine=engine)

    rows = [
        (
            "decision: claim + decide (the pick shown)",
            "SELECT id FROM items WHERE queue = :queue AND status = 'pending' ORDER BY claim_order LIMIT 1",
            {"queue": "bench"},
            claim_and_decide,
        ),
        (
            "review page: the queue (queues.get)",
            "SELECT * FROM queues WHERE name = :q",
            {"q": "bench"},
            lambda: queues.get("bench", engine=engine),
        ),
        (
            "review page: my progress (reviewer, created_at)",
            "SELECT created_at, seconds_spent FROM reviews WHERE reviewer = :r AND created_at >= :t AND undone_at IS NULL",
            {"r": "bencher", "t": "2026-01-01"},
            lambda: metrics.reviewer_progress("bencher", "bench", engine=engine),
        ),
        (
            "every page: counts (background, cached)",
            "SELECT queue, status, count(*) FROM items GROUP BY queue, status",
            {},
            lambda: queues._figures(engine),
        ),
        (
            "  oldest waiting (per queue and status)",
            "SELECT min(created_at) FROM items WHERE queue = :q AND status = 'pending'",
            {"q": "bench"},
            None,
        ),
        (
            "Browse: first page",
            "SELECT * FROM items ORDER BY id DESC LIMIT 50",
            {},
            lambda: items.page(items.ItemFilter(), engine=engine),
        ),
        (
            "Browse: count (capped at 100,000)",
            "SELECT count(*) FROM (SELECT id FROM items LIMIT 100000) AS x",
            {},
            lambda: items.count(items.ItemFilter(), engine=engine, cap=100_000),
        ),
        (
            "Dashboard: decisions per day",
            "SELECT date(created_at), verdict, count(*) FROM reviews WHERE created_at >= :t GROUP BY 1, 2"
            if sqlite
            else "SELECT created_at::date, verdict, count(*) FROM reviews WHERE created_at >= :t GROUP BY 1, 2",
            {"t": "2026-01-01"},
            lambda: metrics.decisions_per_day(engine=engine),
        ),
    ]
    print("  queries at this size (best of 5) and their plans:")
    for label, sql, params, fn in rows:
        ms = timed(fn) if fn else timed(lambda s=sql, p=params: _run(engine, s, p))
        print(f"    {label:<48} {ms:8.1f} ms   {plan(sql, params)}")
    store.dispose(engine)


def _run(engine, sql, params):
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text(sql), params).all()


def report(label: str, values: list[float], bare: list[float] | None = None) -> None:
    ratio = ""
    if bare:
        ratio = f"   {pct(values, 50) / pct(bare, 50):4.2f}x / {pct(values, 95) / pct(bare, 95):4.2f}x bare (p50 / p95)"
    print(
        f"  {label:<38} p50 {pct(values, 50):7.1f} ms  p95 {pct(values, 95):7.1f} ms  (n={len(values)}){ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pending", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--postgres", default=os.environ.get("REVIEWQUEUE_BENCH_POSTGRES_URL"))
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--decisions", type=int, default=20)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "rq-bench-ui"))
    args = parser.parse_args()
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    print(f"reviewqueue review-app benchmark in Chromium; python {sys.version.split()[0]}; {load()}")
    backends = ["SQLite"] + (["PostgreSQL"] if args.postgres else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for backend in backends:
            for pending in args.pending:
                url = database(backend, pending, args)
                print(f"\n[{backend}] {pending:,} pending items  ({load()})")
                bare = bare_round_trip(browser, args.decisions * args.sessions)
                report("bare Streamlit round trip", bare)
                got = review_sessions(browser, url, args.sessions, args.decisions)
                report("decision -> next item painted", got["decision"], bare)
                if got["lost keys"]:
                    print(f"  key presses that did nothing: {len(got['lost keys'])}")
                report("sign-in -> first item painted", got["sign-in"])
                for name in ("Browse", "Dashboard", "Review"):
                    for visit in ("first", "again"):
                        report(f"switch to {name} ({visit} visit)", got[f"{name} ({visit})"])
                report("decision, server side only (AppTest)", apptest_decisions(url, args.decisions))
                queries(url)
                print(f"  ({load()})")
        browser.close()


if __name__ == "__main__":
    main()
