"""Review app benchmark, server side, through Streamlit's AppTest (the same script a
browser session runs):

- with N pending items, the time from pressing Approve to the next item rendered
  (one script run: the decision, the claim, the page), p50 and p95;
- Browse over M items: the first page (count + page query + table), p50.

    python bench/bench_ui.py [--pending 100000] [--browse 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import make_items, pct  # noqa: E402
from bench_export import build  # noqa: E402

from reviewqueue import ingest, queues, store, users  # noqa: E402
from reviewqueue.settings import get_settings  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "reviewqueue" / "ui" / "app.py")


def app_for(url: str):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["REVIEWQUEUE_DATABASE_URL"] = url
    get_settings.cache_clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input[0].input("bencher")
    at.text_input[1].input("bench-password")
    at.button[0].click().run()
    return at


def review_loop(pending: int, decisions: int) -> list[float]:
    url = f"sqlite:///{tempfile.mkdtemp(prefix='rq-ui-')}/ui.db"
    engine = store.make_engine(url)
    store.upgrade(engine)
    queues.create("bench", {"audit_rate": 0.0}, engine=engine)
    users.add("bencher", role="reviewer", password="bench-password", engine=engine)
    for start in range(0, pending, 50_000):
        ingest.submit_many(make_items(min(50_000, pending - start)), engine=engine)
    at = app_for(url)
    times = []
    for _ in range(decisions):
        approve = next(b for b in at.button if b.label == "Approve")
        t = time.perf_counter()
        approve.click().run()
        times.append((time.perf_counter() - t) * 1000)
    assert not at.exception, at.exception
    return times


def browse_first_page(rows: int, runs: int) -> list[float]:
    path = Path(tempfile.mkdtemp(prefix="rq-browse-")) / "browse.db"
    build(path, rows)
    engine = store.make_engine(f"sqlite:///{path}")
    users.add("bencher", role="reviewer", password="bench-password", engine=engine)
    engine.dispose()
    at = app_for(f"sqlite:///{path}")
    times = []
    for _ in range(runs):
        at.sidebar.radio[0].set_value("Review").run()
        t = time.perf_counter()
        at.sidebar.radio[0].set_value("Browse").run()
        times.append((time.perf_counter() - t) * 1000)
    assert not at.exception, at.exception
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--browse", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"reviewqueue review-app benchmark (AppTest, server side); python {sys.version.split()[0]}")
    t = review_loop(args.pending, args.decisions)
    print(
        f"Approve -> next item rendered, {args.pending:,} pending:  p50 {pct(t, 50):6.1f} ms  p95 {pct(t, 95):6.1f} ms"
        f"  (mean {statistics.mean(t):.1f} ms, {len(t)} decisions)"
    )
    b = browse_first_page(args.browse, 5)
    print(
        f"Browse first page, {args.browse:,} items:          p50 {pct(b, 50):6.1f} ms  max {max(b):6.1f} ms"
    )


if __name__ == "__main__":
    main()
