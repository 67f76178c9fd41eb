"""Real-browser end-to-end tests: Debian's Chromium driven by playwright against the
app started as a user starts it. Checks what only a browser shows: rendering,
keyboard shortcuts and network requests."""

import os
import re
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


def sign_in(page, base, name="rita"):
    from playwright.sync_api import expect

    page.goto(base)
    page.get_by_label("Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(f"{name}-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible(timeout=30_000)


def sign_in_and_open_queue(page, base):
    from playwright.sync_api import expect

    sign_in(page, base)
    # The only queue is preselected; the first item is claimed and shown at once.
    expect(page.get_by_role("button", name="Approve · A")).to_be_enabled(timeout=30_000)


def decided_today(page, n: int):
    from playwright.sync_api import expect

    expect(page.get_by_text(f"You: {n} today")).to_be_visible(timeout=30_000)


def status_of(url, external_id, queue="support"):
    engine = store.make_engine(url)
    try:
        return items.get_by_external_id(queue, external_id, engine=engine)
    finally:
        engine.dispose()


def test_review_flow_from_the_keyboard(browser, app_server, recorder, tmp_path):
    from playwright.sync_api import expect

    base, url = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in_and_open_queue(page, base)
    # 1. The evil item is first (lowest confidence): approve it with A.
    expect(page.get_by_text("not bold**").first).to_be_visible()
    page.keyboard.press("a")
    decided_today(page, 1)
    assert status_of(url, "evil").status == "approved"
    # 2. Correct the password answer: E opens the editor, Ctrl+Enter shows the coloured diff, again saves.
    expect(page.get_by_text("Go to Settings and press Reset.").first).to_be_visible(timeout=30_000)
    page.keyboard.press("e")  # E opens the editor
    editor = page.get_by_label("Corrected output")
    editor.fill("Go to Settings > Security and press Reset password.")
    editor.press("Control+Enter")
    expect(page.get_by_text("+ > Security").first).to_be_visible(timeout=30_000)
    shot = (
        ROOT / "docs" / "review-page.png"
        if os.environ.get("REVIEWQUEUE_UPDATE_SCREENSHOT")
        else tmp_path / "shot.png"
    )
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    editor.press("Control+Enter")
    decided_today(page, 2)
    corrected = status_of(url, "b")
    assert corrected.status == "corrected"
    assert corrected.decision.final_output == "Go to Settings > Security and press Reset password."
    # 3. Reject the refund answer: 1 picks the first reason, X rejects.
    expect(page.get_by_text("No refunds ever.").first).to_be_visible(timeout=30_000)
    page.keyboard.press("1")
    expect(page.get_by_text("Reject reason: press its number, then X")).to_be_visible()
    time.sleep(0.5)  # the pick's rerun
    page.keyboard.press("x")
    decided_today(page, 3)
    rejected = status_of(url, "c")
    assert rejected.status == "rejected" and rejected.decision.reason == "incorrect"
    assert recorder.requests == []


def test_enter_in_the_comment_never_decides(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in_and_open_queue(page, base)
    expect(page.get_by_text("not bold**").first).to_be_visible()
    page.keyboard.press("m")  # M opens the comment box
    comment = page.get_by_label("Comment (optional; Enter does not submit)")
    comment.fill("this looks wrong to me")
    comment.press("Enter")
    time.sleep(1.5)
    assert status_of(url, "evil").status == "in_review"
    expect(page.get_by_text("You: 0 today")).to_be_visible()


def test_after_picking_a_queue_the_keys_review(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    engine = store.make_engine(url)
    queues.create("other", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
    ingest.submit(
        {"queue": "other", "external_id": "o1", "input": "x", "output": "y", "confidence": 0.1}, engine=engine
    )
    engine.dispose()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, base)
    page.get_by_role("radio", name="other").click()
    expect(page.get_by_role("button", name="Approve · A")).to_be_enabled(timeout=30_000)
    page.keyboard.press("a")  # the picker must not have kept the keyboard
    decided_today(page, 1)
    assert status_of(url, "o1", "other").status == "approved"


def test_hidden_characters_show_as_markers(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    engine = store.make_engine(url)
    ingest.submit(
        {
            "queue": "support",
            "external_id": "bidi",
            "input": "status?",
            "model": "m\u202eevil",
            "output": "Refund \u202e!devorppa\u202c status",
            "confidence": 0.001,
        },
        engine=engine,
    )
    engine.dispose()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in_and_open_queue(page, base)
    expect(page.get_by_text("Refund ⟨U+202E⟩!devorppa⟨U+202C⟩ status").first).to_be_visible()
    expect(page.get_by_text("m⟨U+202E⟩evil").first).to_be_visible()
    expect(page.get_by_text("invisible or direction-changing characters").first).to_be_visible()


def test_long_content_scrolls_and_the_buttons_stay_in_view(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    engine = store.make_engine(url)
    ingest.submit(
        {
            "queue": "support",
            "external_id": "long",
            "input": "word " * 100_000,
            "output": "line\n" * 5_000,
            "confidence": 0.0001,
        },
        engine=engine,
    )
    engine.dispose()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    sign_in_and_open_queue(page, base)
    approve = page.get_by_role("button", name="Approve · A")
    expect(approve).to_be_in_viewport()
    box = approve.bounding_box()
    assert box and box["y"] + box["height"] <= 900


def test_pages_have_their_own_urls(browser, app_server, recorder):
    from playwright.sync_api import expect

    base, _ = app_server
    page = browser.new_page()
    outside = []
    page.on(
        "request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url)
    )
    sign_in(page, base)
    for name, path in (
        ("Browse", "/browse"),
        ("Dashboard", "/dashboard"),
        ("Quality", "/quality"),
        ("Review", ""),  # Review is "/"
    ):
        page.get_by_role("link", name=name).click()
        expect(page).to_have_url(re.compile(rf"{path}/?$"), timeout=30_000)
        if name == "Quality":  # its charts are drawn in the page, from nothing outside it
            expect(page.get_by_text("Is the confidence honest?")).to_be_visible(timeout=30_000)
            expect(
                page.locator(
                    "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
                ).first
            ).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Approve · A")).to_be_enabled(timeout=30_000)
    assert recorder.requests == [] and outside == []


def test_other_pages_scripts_load_hidden_while_the_reviewer_reads(browser, app_server):
    """After sign-in the app draws, once and out of sight, the kinds of elements Browse
    and the Dashboard show, so the browser has their scripts before the first visit.
    Nothing of it shows, and the review keys still work."""
    from playwright.sync_api import expect

    base, _ = app_server
    page = browser.new_page()
    sign_in_and_open_queue(page, base)
    preload = page.locator(".st-key-rq_preload")
    expect(preload.locator("[data-testid='stDataFrame']")).to_be_attached(timeout=30_000)
    expect(preload.locator("[data-testid='stVegaLiteChart']")).to_be_attached(timeout=30_000)
    expect(preload).to_be_hidden()
    assert not page.get_by_text("preload", exact=True).first.is_visible()
    first = page.get_by_text(re.compile(r"^Item ")).first.inner_text()
    page.keyboard.press("a")
    expect(page.get_by_text(re.compile(r"^Item ")).first).not_to_have_text(first, timeout=30_000)
    page.close()


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


def test_two_reviewers_disagree_and_a_lead_settles_it(browser, app_server, tmp_path):
    """Several reviewers per item, end to end: ann approves, bob corrects, the item is
    disputed; lena (a lead) takes bob's correction on the Adjudicate page; the item's
    final decision and its export row say so."""
    import json

    from playwright.sync_api import expect

    from reviewqueue.export import export

    base, url = app_server
    engine = store.make_engine(url)
    queues.create(
        "pair",
        {"threshold": 0.8, "audit_rate": 0.0, "reviews_required": 2, "reject_reasons": ["incorrect"]},
        engine=engine,
    )
    for name, role in (("ann", "reviewer"), ("bob", "reviewer"), ("lena", "lead")):
        users.add(name, role=role, password=f"{name}-password", engine=engine)
    ingest.submit(
        {
            "queue": "pair",
            "external_id": "p1",
            "input": "Refund?",
            "output": "Refunds take 5 days.",
            "confidence": 0.2,
        },
        engine=engine,
    )
    engine.dispose()

    def reviewer_session(name: str):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        sign_in(page, base, name)
        page.get_by_role("radio", name="pair").click()
        expect(page.get_by_text("Refunds take 5 days.").first).to_be_visible(timeout=30_000)
        return context, page

    ctx, page = reviewer_session("ann")
    page.keyboard.press("a")
    expect(page.get_by_text("You: 1 today")).to_be_visible(timeout=30_000)
    ctx.close()
    assert status_of(url, "p1", "pair").reviews_done == 1
    ctx, page = reviewer_session("bob")
    page.keyboard.press("e")
    editor = page.get_by_label("Corrected output")
    editor.fill("Refunds take 7 business days.")
    editor.press("Control+Enter")
    expect(page.get_by_text("+ 7 business").first).to_be_visible(timeout=30_000)
    editor.press("Control+Enter")
    expect(page.get_by_text("You: 1 today")).to_be_visible(timeout=30_000)
    ctx.close()
    assert status_of(url, "p1", "pair").status == "disputed"

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    sign_in(page, base, "lena")
    page.get_by_role("link", name="Adjudicate").click()
    expect(page.get_by_text("ann: approve")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("bob: correct")).to_be_visible()
    page.get_by_role("button", name="Take bob's decision").click()
    expect(page.get_by_text("settled: corrected")).to_be_visible(timeout=30_000)
    ctx.close()

    final = status_of(url, "p1", "pair")
    assert final.status == "corrected" and final.decision.reviewer == "lena"
    assert final.decision.final_output == "Refunds take 7 business days." and final.agreement == 0.5
    engine = store.make_engine(url)
    try:
        [result] = export(tmp_path / "out", fmt="jsonl", queues=["pair"], feed="e2e", engine=engine)
    finally:
        engine.dispose()
    [row] = [json.loads(line) for line in Path(result.path).read_text().splitlines()]
    assert (row["verdict"], row["reference_output"], row["reviewer"]) == (
        "correct",
        "Refunds take 7 business days.",
        "lena",
    )
    assert [(r["reviewer"], r["verdict"], r["adjudication"]) for r in row["reviews"]] == [
        ("ann", "approve", False),
        ("bob", "correct", False),
        ("lena", "correct", True),
    ]
    assert row["agreement"] == 0.5
