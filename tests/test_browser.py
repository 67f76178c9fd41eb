"""Real-browser end-to-end tests: Debian's Chromium driven by playwright against the
app started as a user starts it. Checks what only a browser shows: rendering,
keyboard shortcuts and network requests."""

import os
import time
from pathlib import Path

import pytest

from reviewqueue import ingest, items, queues, store, users

from .conftest import CHROMIUM, LocalServer, quiet_handler, streamlit_app

ROOT = Path(__file__).parent.parent
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test installs it)"
    ),
]


class _RecordGet(quiet_handler()):
    def do_GET(self):
        self.server.owner.requests.append(self.path)
        self.send_response(200)
        self.end_headers()


class Recorder(LocalServer):
    """Records every request that reaches it: an inert page must make none."""

    def __init__(self):
        self.requests = []
        super().__init__(_RecordGet)
        self.start()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def app_server(tmp_path, recorder):
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    engine = store.make_engine(url)
    store.upgrade(engine)
    users.add("rita", role="reviewer", password="rita-password", engine=engine)
    queues.create(
        "support",
        {"threshold": 0.8, "audit_rate": 0.0, "reject_reasons": ["incorrect", "harmful"]},
        engine=engine,
    )
    pixel = f"http://127.0.0.1:{recorder.port}"
    evil = (
        f'Sure! ![tracking]({pixel}/markdown.png) <img src="{pixel}/html.png"> '
        f"[click me](javascript:alert(1)) <script>fetch('{pixel}/script')</script> **not bold**"
    )
    ingest.submit_many(
        [
            {
                "queue": "support",
                "external_id": "evil",
                "input": evil,
                "output": evil,
                "confidence": 0.01,
                "context": [{"title": f"![t]({pixel}/title.png)", "text": evil, "url": f"{pixel}/source"}],
            },
            {
                "queue": "support",
                "external_id": "b",
                "input": "How do I reset my password?",
                "output": "Go to Settings and press Reset.",
                "confidence": 0.2,
            },
            {
                "queue": "support",
                "external_id": "c",
                "input": "Refund?",
                "output": "No refunds ever.",
                "confidence": 0.3,
            },
            {
                "queue": "support",
                "external_id": "d",
                "input": "SSO?",
                "output": "Yes, on Team.",
                "confidence": 0.4,
            },
        ],
        engine=engine,
    )
    engine.dispose()
    with streamlit_app(url) as base:
        yield base, url


def sign_in_and_open_queue(page, base):
    from playwright.sync_api import expect

    page.goto(base)
    page.get_by_label("Username").fill("rita")
    page.get_by_role("textbox", name="Password").fill("rita-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as rita")).to_be_visible(timeout=30_000)
    # The only queue is preselected; the first item is claimed and shown at once.
    expect(page.get_by_role("button", name="Approve")).to_be_enabled(timeout=30_000)


def status_of(url, external_id):
    engine = store.make_engine(url)
    try:
        return items.get_by_external_id("support", external_id, engine=engine)
    finally:
        engine.dispose()


def test_review_flow_in_a_real_browser(browser, app_server, recorder, tmp_path):
    from playwright.sync_api import expect

    base, url = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    sign_in_and_open_queue(page, base)
    # 1. The evil item is first (lowest confidence): approve it with the keyboard.
    expect(page.get_by_text("not bold**").first).to_be_visible()
    page.get_by_role("heading", name="Model output").click()  # focus the page, not an input
    page.keyboard.press("a")
    expect(page.get_by_text("Decided this session: 1")).to_be_visible(timeout=30_000)
    assert status_of(url, "evil").status == "approved"
    # 2. Correct the password answer: edit, see the diff, submit.
    expect(page.get_by_text("Go to Settings and press Reset.").first).to_be_visible(timeout=30_000)
    editor = page.get_by_label("Corrected output")
    editor.fill("Go to Settings > Security and press Reset password.")
    page.get_by_role("button", name="Submit correction").click()
    expect(page.get_by_text("{+> Security+}", exact=False).first).to_be_visible(timeout=30_000)
    # The README's screenshot: refreshed with REVIEWQUEUE_UPDATE_SCREENSHOT=1, so a plain
    # test run leaves the work tree clean.
    shot = (
        ROOT / "docs" / "review-page.png"
        if os.environ.get("REVIEWQUEUE_UPDATE_SCREENSHOT")
        else tmp_path / "shot.png"
    )
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.get_by_role("button", name="Submit correction").click()
    expect(page.get_by_text("Decided this session: 2")).to_be_visible(timeout=30_000)
    corrected = status_of(url, "b")
    assert corrected.status == "corrected"
    assert corrected.decision.final_output == "Go to Settings > Security and press Reset password."
    # 3. Reject the refund answer with a reason.
    expect(page.get_by_text("No refunds ever.").first).to_be_visible(timeout=30_000)
    page.get_by_role("combobox", name="Reject reason").click()
    page.get_by_role("option", name="incorrect").click()
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_text("Decided this session: 3")).to_be_visible(timeout=30_000)
    rejected = status_of(url, "c")
    assert rejected.status == "rejected" and rejected.decision.reason == "incorrect"
    assert recorder.requests == []


def test_untrusted_output_is_inert(browser, app_server, recorder):
    from playwright.sync_api import expect

    base, _ = app_server
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    sign_in_and_open_queue(page, base)
    # The markup shows as text...
    expect(page.get_by_text("![tracking](").first).to_be_visible()
    expect(page.get_by_text("<img src=").first).to_be_visible()
    page.get_by_text("Retrieved sources (1)").click()
    expect(page.get_by_text("![t](").first).to_be_visible()
    time.sleep(2)  # give any image, script or link fetch the time to happen
    # ...and nothing was fetched, run or opened.
    assert recorder.requests == []
    assert not [u for u in requested if f":{recorder.port}" in u]
    assert dialogs == []
    assert page.locator(f"img[src*='{recorder.port}']").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
