"""How Chromium is started here: Debian's build (Playwright's own download fails on this
network), headless, with nothing that phones home. Shared by the browser tests and
bench/bench_ui.py so both measure the same browser."""

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
