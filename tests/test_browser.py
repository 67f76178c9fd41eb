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


def keys_ready(page):
    """The review app's keyboard script is running (ui/keys.py marks the page)."""
    page.wait_for_selector("html[data-rq-keys]", state="attached", timeout=30_000)


def settled(page):
    """The app's script has finished its run: a shortcut pressed while the page is being
    replaced can be lost (Streamlit re-registers a button's key when it draws it)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=30_000)


def sign_in(page, base, name="rita", path=""):
    """Sign in from the keyboard only: the cursor starts in the user name, Tab, Enter."""
    from playwright.sync_api import expect

    page.goto(base + path)
    expect(page).to_have_url(re.compile(r"/rq/sign-in\?next="), timeout=30_000)
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(f"{name}-password")
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible(timeout=30_000)
    keys_ready(page)


def sign_in_and_open_queue(page, base):
    from playwright.sync_api import expect

    sign_in(page, base)
    # The only queue is preselected; the first item is claimed and shown at once.
    expect(page.get_by_role("button", name="Approve")).to_be_enabled(timeout=30_000)
    settled(page)


def decided_today(page, n: int):
    from playwright.sync_api import expect

    expect(page.get_by_text(f"You: {n} today")).to_be_visible(timeout=30_000)


def item_on_screen(page) -> str:
    from playwright.sync_api import expect

    caption = page.get_by_text(re.compile(r"^item [0-9a-f-]{36}$"))
    expect(caption).to_be_visible(timeout=30_000)
    return caption.inner_text().removeprefix("item ")


def status_of(url, external_id, queue="support"):
    engine = store.make_engine(url)
    try:
        return items.get_by_external_id(queue, external_id, engine=engine)
    finally:
        engine.dispose()


def test_review_flow_from_the_keyboard(browser, app_server, recorder, tmp_path):
    """Sign-in to four decisions with no mouse and no waiting between keys and typing:
    A approves; E then typing goes into the editor (even the letters that are
    shortcuts), Ctrl+Enter shows the diff, again saves; M, a comment, Esc, X and a
    reason number reject with the comment."""
    from playwright.sync_api import expect

    base, url = app_server
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in_and_open_queue(page, base)
    # 1. The evil item is first (lowest confidence): approve it with A.
    expect(page.get_by_text("not bold**").first).to_be_visible()
    page.keyboard.press("a")
    decided_today(page, 1)
    assert status_of(url, "evil").status == "approved"
    # 2. E and straight on typing: "as" holds an A and an S, which must not approve or skip.
    expect(page.get_by_text("Go to Settings and press Reset.").first).to_be_visible(timeout=30_000)
    page.keyboard.press("e")
    page.keyboard.type(" as admin")
    editor = page.get_by_label("Corrected output")
    expect(editor).to_have_value("Go to Settings and press Reset. as admin", timeout=30_000)
    expect(editor).to_be_focused()
    page.keyboard.press("Control+Enter")
    expect(page.get_by_text("+ as admin").first).to_be_visible(timeout=30_000)
    for width, height, name in ((1366, 768, "review-page.png"), (1920, 1080, "review-page-1920.png")):
        page.set_viewport_size({"width": width, "height": height})
        shot = ROOT / "docs" / name if os.environ.get("REVIEWQUEUE_UPDATE_SCREENSHOT") else tmp_path / name
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    page.keyboard.press("Control+Enter")
    decided_today(page, 2)
    corrected = status_of(url, "b")
    assert corrected.status == "corrected"
    assert corrected.decision.final_output == "Go to Settings and press Reset. as admin"
    # 3. M, a comment, Esc (the box lets go of the keys, the text stays), X, 1.
    expect(page.get_by_text("No refunds ever.").first).to_be_visible(timeout=30_000)
    page.keyboard.press("m")
    page.keyboard.type("cites no policy")
    expect(page.get_by_label(re.compile("^Comment"))).to_have_value("cites no policy", timeout=30_000)
    page.keyboard.press("Escape")
    page.keyboard.press("x")
    expect(page.get_by_text("Reject: which reason?")).to_be_visible(timeout=30_000)
    page.keyboard.press("1")
    decided_today(page, 3)
    rejected = status_of(url, "c")
    assert rejected.status == "rejected" and rejected.decision.reason == "incorrect"
    assert rejected.decision.comment == "cites no policy"
    assert recorder.requests == []


def test_esc_closes_the_box_and_keeps_the_text(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in_and_open_queue(page, base)
    expect(page.get_by_text("not bold**").first).to_be_visible()
    page.keyboard.press("e")
    page.keyboard.type(" Actually, no.")
    editor = page.get_by_label("Corrected output")
    expect(editor).to_have_value(re.compile(r" Actually, no\.$"), timeout=30_000)
    page.keyboard.press("Escape")  # out of the box
    expect(editor).not_to_be_focused()
    page.keyboard.press("Escape")  # the box closes
    expect(editor).to_have_count(0, timeout=30_000)
    expect(page.get_by_text("Your correction is kept")).to_be_visible()
    page.keyboard.press("e")
    expect(page.get_by_label("Corrected output")).to_have_value(
        re.compile(r" Actually, no\.$"), timeout=30_000
    )
    assert status_of(url, "evil").status == "in_review"


def test_enter_in_the_comment_never_decides(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in_and_open_queue(page, base)
    expect(page.get_by_text("not bold**").first).to_be_visible()
    page.keyboard.press("m")  # M opens the comment box
    page.keyboard.type("this looks wrong to me")
    comment = page.get_by_label("Comment (optional; Enter does not submit)")
    expect(comment).to_have_value("this looks wrong to me", timeout=30_000)
    page.keyboard.press("Enter")
    time.sleep(1.5)
    assert status_of(url, "evil").status == "in_review"
    expect(page.get_by_text("You: 0 today")).to_be_visible()


def tickets(url, n: int) -> None:
    """A classification queue, tickets, with items t1..tn labelled billing."""
    engine = store.make_engine(url)
    queues.create(
        "tickets", {"threshold": 0.8, "audit_rate": 0.0, "labels": ["billing", "bug"]}, engine=engine
    )
    for i in range(1, n + 1):
        ingest.submit(
            {
                "queue": "tickets",
                "external_id": f"t{i}",
                "input": "the app crashes",
                "output": "billing",
                "predicted_label": "billing",
                "confidence": 0.1,
            },
            engine=engine,
        )
    engine.dispose()


def test_queues_are_picked_and_labels_corrected_with_number_keys(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    tickets(url, 1)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, base)
    expect(page.get_by_role("button", name=re.compile(r"^tickets"))).to_be_enabled(timeout=30_000)
    page.keyboard.press("2")  # support, tickets: tickets
    expect(page).to_have_url(re.compile(r"\?queue=tickets$"), timeout=30_000)
    expect(page.get_by_role("button", name="Submit correction")).to_be_enabled(timeout=30_000)
    settled(page)
    page.keyboard.press("2")  # bug
    expect(page.get_by_role("button", name=re.compile("^bug"))).to_have_attribute(
        "data-testid", "stBaseButton-primaryFormSubmit", timeout=30_000
    )
    page.keyboard.press("Control+Enter")
    decided_today(page, 1)
    got = status_of(url, "t1", "tickets")
    assert got.status == "corrected" and got.decision.final_label == "bug"
    page.keyboard.press("q")  # back to the queues, then 1: support
    expect(page.get_by_role("button", name=re.compile(r"^support"))).to_be_enabled(timeout=30_000)
    page.keyboard.press("1")
    expect(page.get_by_role("button", name="Approve")).to_be_enabled(timeout=30_000)
    settled(page)
    page.keyboard.press("a")
    expect(page.get_by_text("You: 1 today")).to_be_visible(timeout=30_000)  # today's count is per queue
    assert status_of(url, "evil").status == "approved"


def test_keys_typed_ahead_of_a_page_replacement_wait_for_it_but_never_decide_an_unseen_item(
    browser, app_server
):
    """No waiting between keys: "Q" then "1" opens queue 1; "2" then Ctrl+Enter stores
    label 2; but keys typed before an item was on screen do not decide it ("A", "A"
    approves one item, not the next one too)."""
    from playwright.sync_api import expect

    base, url = app_server
    tickets(url, 2)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, base)
    expect(page.get_by_role("button", name=re.compile(r"^tickets"))).to_be_enabled(timeout=30_000)
    settled(page)
    # Picking the queue and deciding in one breath: the item was not on screen yet.
    page.keyboard.press("2")
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_role("button", name="Submit correction")).to_be_enabled(timeout=30_000)
    settled(page)
    page.wait_for_timeout(500)
    assert {status_of(url, t, "tickets").status for t in ("t1", "t2")} <= {"pending", "in_review"}
    # The item is on screen: a number and Ctrl+Enter at once store that label.
    first = item_on_screen(page)
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    decided_today(page, 1)
    done = [t for t in ("t1", "t2") if status_of(url, t, "tickets").status == "corrected"]
    assert len(done) == 1 and status_of(url, done[0], "tickets").decision.final_label == "bug"
    assert status_of(url, done[0], "tickets").id == first
    settled(page)
    # Back to the queues and into the other one, at once.
    page.keyboard.press("q")
    page.keyboard.press("1")
    expect(page).to_have_url(re.compile(r"\?queue=support$"), timeout=30_000)
    expect(page.get_by_role("button", name="Approve")).to_be_enabled(timeout=30_000)
    settled(page)
    # A double press approves what is on screen, and only that.
    shown = item_on_screen(page)
    page.keyboard.press("a")
    page.keyboard.press("a")
    decided_today(page, 1)
    page.wait_for_timeout(1_000)
    settled(page)
    approved = [status_of(url, x) for x in ("evil", "b", "c", "d")]
    assert [i.id for i in approved if i.status == "approved"] == [shown]
    expect(page.get_by_text("You: 1 today")).to_be_visible()


def test_a_structured_output_is_corrected_field_by_field_from_the_keyboard(browser, app_server, tmp_path):
    """A 20-field invoice with 3 flagged fields: Tab goes to the flagged ones only (the 17
    others are read-only), two are corrected by typing, Ctrl+Enter shows the changes per
    field and saves; the decision and the field-level export hold the two changes."""
    import json

    from playwright.sync_api import expect

    from reviewqueue import export

    base, url = app_server
    scalars = {
        "vendor": "ACME GmbH",
        "invoice_no": "A-17",
        "date": "2026-11-30",
        "currency": "EUR",
        "total": 119.0,
        "tax": 19.0,
        "paid": False,
        "iban": "n/a",
        "po": "PO-9",
        "notes": "none",
    }
    lines = [{"description": f"item {i}", "amount": 20.0} for i in range(5)]
    output = {**scalars, "line_items": lines}
    schema = {
        "type": "object",
        "properties": {
            **{k: {"type": "number"} for k in ("total", "tax")},
            "paid": {"type": "boolean"},
            "line_items": {
                "type": "array",
                "items": {"type": "object", "properties": {"amount": {"type": "number"}}},
            },
        },
    }
    engine = store.make_engine(url)
    queues.create("invoices", {"threshold": 0.8, "audit_rate": 0.0, "output_schema": schema}, engine=engine)
    confidence = {"vendor": 0.99, "total": 0.5, "tax": 0.6, "line_items[2].amount": 0.55, "paid": 0.97}
    ingest.submit(
        {
            "queue": "invoices",
            "external_id": "inv-1",
            "input": "scan-1.pdf",
            "output": output,
            "field_confidence": confidence,
        },
        engine=engine,
    )
    engine.dispose()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, base)
    expect(page.get_by_role("button", name=re.compile(r"^invoices"))).to_be_enabled(timeout=30_000)
    settled(page)
    page.keyboard.press("1")
    expect(page.get_by_role("button", name="Submit correction")).to_be_enabled(timeout=30_000)
    settled(page)
    boxes = page.locator("input[aria-label^='Flagged field'], input[aria-label^='Field']")
    expect(boxes).to_have_count(20)
    expect(page.locator("input[aria-label^='Field']:not([disabled])")).to_have_count(0)
    # Tab, type; Tab (tax is right); Tab, type; Ctrl+Enter twice. Nothing else.
    page.keyboard.press("Tab")
    page.keyboard.type("120.0")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("25")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_text("total: 119.0 → 120.0")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("line_items[2].amount: 20.0 → 25")).to_be_visible()
    settled(page)
    page.keyboard.press("Control+Enter")
    decided_today(page, 1)
    got = status_of(url, "inv-1", "invoices")
    assert got.status == "corrected"
    assert got.decision.final_output == {
        **output,
        "total": 120.0,
        "line_items": [*lines[:2], {"description": "item 2", "amount": 25}, *lines[3:]],
    }
    assert got.flagged_fields == ["total", "tax", "line_items[2].amount"]
    time.sleep(1.2)
    engine = store.make_engine(url)
    try:
        [r] = export.export(tmp_path, fmt="fields-jsonl", queues=["invoices"], engine=engine)
    finally:
        engine.dispose()
    changed = {
        x["path"]: (x["original"], x["corrected"]) for x in map(json.loads, open(r.path)) if x["changed"]
    }
    assert changed == {"total": (119.0, 120.0), "line_items[2].amount": (20.0, 25)}


def test_a_reload_a_new_tab_and_an_address_keep_the_session_and_the_item(browser, app_server):
    from playwright.sync_api import expect

    base, url = app_server
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    sign_in_and_open_queue(page, base)
    held = item_on_screen(page)
    expect(page).to_have_url(re.compile(r"\?queue=support$"))
    page.reload()
    expect(page.get_by_text("Signed in as rita")).to_be_visible(timeout=30_000)
    assert item_on_screen(page) == held  # still the reviewer's, not a new claim
    second = context.new_page()
    second.goto(base + "/browse")
    expect(second).to_have_url(re.compile(r"/browse$"), timeout=30_000)
    expect(second.get_by_text("Signed in as rita")).to_be_visible(timeout=30_000)
    second.close()
    # A bookmarked address in a browser with no session: sign in, then that page.
    fresh = browser.new_context(viewport={"width": 1366, "height": 768})
    other = fresh.new_page()
    sign_in(other, base, path="/dashboard")
    expect(other).to_have_url(re.compile(r"/dashboard$"), timeout=30_000)
    fresh.close()
    # Signing out gives the item back at once and every tab of the browser is out.
    page.get_by_test_id("rq-sign-out").click()
    expect(page.get_by_text("You signed out.")).to_be_visible(timeout=30_000)
    engine = store.make_engine(url)
    try:
        assert items.get(held, engine=engine).status == "pending"
    finally:
        engine.dispose()
    again = context.new_page()
    again.goto(base + "/review?queue=support")
    expect(again).to_have_url(re.compile(r"/rq/sign-in\?next=%2Freview%3Fqueue%3Dsupport$"), timeout=30_000)
    context.close()


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
    approve = page.get_by_role("button", name="Approve")
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
    expect(page.get_by_role("button", name="Approve")).to_be_enabled(timeout=30_000)
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
    first = item_on_screen(page)
    page.keyboard.press("a")
    expect(page.get_by_text(re.compile(r"^item "))).not_to_have_text(f"item {first}", timeout=30_000)
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
        expect(page.get_by_role("button", name=re.compile(r"^pair"))).to_be_enabled(timeout=30_000)
        page.keyboard.press("1")  # pair, support: pair
        expect(page.get_by_text("Refunds take 5 days.").first).to_be_visible(timeout=30_000)
        settled(page)
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
