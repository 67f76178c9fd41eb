"""The Streamlit app's pages and actions, headless (streamlit.testing AppTest)."""

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from reviewqueue import ingest, items, queues, review, users

from .conftest import item

APP = str(Path(__file__).parent.parent / "reviewqueue" / "ui" / "app.py")


@pytest.fixture
def app(db_url, engine):
    st.cache_resource.clear()
    users.add("rita", role="reviewer", password="rita-password", engine=engine)
    users.add("adam", role="admin", password="adam-password", engine=engine)
    queues.create(
        "support",
        {
            "threshold": 0.8,
            "audit_rate": 0.0,
            "lease_seconds": 60,
            "reject_reasons": ["incorrect", "harmful"],
        },
        engine=engine,
    )
    queues.create(
        "tickets",
        {"threshold": 0.8, "audit_rate": 0.0, "labels": ["billing", "bug"], "reject_reasons": ["spam"]},
        engine=engine,
    )
    ingest.submit_many(
        [item(i, confidence=0.1 * (i + 1), output=f"draft answer {i}") for i in range(3)], engine=engine
    )
    yield AppTest.from_file(APP, default_timeout=30)
    st.cache_resource.clear()


def sign_in(at: AppTest, name="rita", password=None) -> AppTest:
    at.run()
    inputs = at.text_input
    inputs[0].input(name)
    inputs[1].input(password or f"{name}-password")
    at.button[0].click().run()
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def pick_queue(at: AppTest, name: str) -> AppTest:
    at.selectbox[0].select(name).run()
    return at


def current_id(at: AppTest) -> str:
    item = at.session_state["rq_item"]
    assert item is not None, (
        f"no item on screen; exceptions: {[e.value for e in at.exception]}, "
        f"errors: {[e.value for e in at.error]}, text: {[t.value for t in at.text]}"
    )
    return item["id"]


def test_sign_in_right_and_wrong(app):
    app.run()
    assert [t.label for t in app.text_input] == ["Username", "Password"]
    assert app.button[0].label == "Sign in"
    sign_in(app, "rita", "wrong")
    assert "wrong username or password" in app.error[0].value
    sign_in(app, "rita")
    assert not app.error
    assert "Signed in as rita" in app.sidebar.text[0].value
    assert [o for o in app.sidebar.radio[0].options] == ["Review", "Browse", "Dashboard", "Exports"]


def test_sign_in_is_rate_limited(app):
    for _ in range(5):
        sign_in(app, "rita", "nope")
    sign_in(app, "rita")
    assert "too many failed sign-ins" in app.error[0].value


def test_admin_sees_admin_page(app):
    sign_in(app, "adam")
    assert "Admin" in app.sidebar.radio[0].options
    app.sidebar.radio[0].set_value("Admin").run()
    assert any(h.value == "Admin" for h in app.header)
    assert not app.exception


def test_approve_then_next_item_is_on_screen(app, engine):
    sign_in(app)
    pick_queue(app, "support")
    first = current_id(app)
    button(app, "Approve").click().run()
    assert items.get(first, engine=engine).status == "approved"
    assert current_id(app) != first
    assert "Decided this session: 1" in " ".join(t.value for t in app.text)


def test_correct_shows_diff_then_saves(app, engine):
    sign_in(app)
    pick_queue(app, "support")
    first = current_id(app)
    app.text_area(key=f"edit-{first}").input("draft answer with a fix")
    button(app, "Submit correction").click().run()
    assert items.get(first, engine=engine).status == "in_review"  # diff shown first
    assert any("{+with a fix+}" in c.value for c in app.code)
    button(app, "Submit correction").click().run()
    got = items.get(first, engine=engine)
    assert got.status == "corrected" and got.decision.final_output == "draft answer with a fix"


def test_correct_label_in_classification_queue(app, engine):
    ingest.submit(
        {
            "queue": "tickets",
            "input": "app crashes",
            "output": "billing",
            "predicted_label": "billing",
            "confidence": 0.2,
        },
        engine=engine,
    )
    sign_in(app)
    pick_queue(app, "tickets")
    first = current_id(app)
    app.selectbox(key=f"label-{first}").select("bug")
    button(app, "Submit correction").click().run()
    got = items.get(first, engine=engine)
    assert got.status == "corrected" and got.decision.final_label == "bug"


def test_reject_needs_reason(app, engine):
    sign_in(app)
    pick_queue(app, "support")
    first = current_id(app)
    button(app, "Reject").click().run()
    assert "needs a reason" in app.error[0].value
    assert items.get(first, engine=engine).status == "in_review"
    app.selectbox(key=f"reason-{first}").select("harmful")
    app.text_input(key=f"comment-{first}").input("unsafe advice")
    button(app, "Reject").click().run()
    got = items.get(first, engine=engine)
    assert (
        got.status == "rejected"
        and got.decision.reason == "harmful"
        and got.decision.comment == "unsafe advice"
    )


def test_skip_releases(app, engine):
    sign_in(app)
    pick_queue(app, "support")
    first = current_id(app)
    button(app, "Skip").click().run()
    assert current_id(app) != first
    assert items.get(first, engine=engine).status == "pending"


def test_undo_brings_the_item_back(app, engine):
    sign_in(app)
    pick_queue(app, "support")
    first = current_id(app)
    button(app, "Approve").click().run()
    button(app, "Undo last decision (approve)").click().run()
    assert current_id(app) == first
    got = items.get(first, engine=engine)
    assert got.status == "in_review" and got.lease_holder == "rita" and got.decision is None


def test_expired_lease_taken_by_someone_else(app, engine, fake_clock):
    sign_in(app)
    pick_queue(app, "support")
    first = current_id(app)
    fake_clock.advance(61)
    taken = review.claim_next("support", "otto", engine=engine)
    assert taken.id == first
    app.text_area(key=f"edit-{first}").input("my careful rewrite")
    button(app, "Approve").click().run()
    assert any("otto" in w.value for w in app.warning)
    assert app.text_area(key="lost-draft").value == "my careful rewrite"
    assert current_id(app) != first
    assert items.get(first, engine=engine).lease_holder == "otto"


def test_untrusted_output_is_rendered_as_code_not_markdown(app, engine):
    evil = "![x](http://127.0.0.1:9/pixel.png) <img src=x onerror=alert(1)> **bold**"
    ingest.submit({"queue": "tickets", "input": evil, "output": evil, "confidence": 0.1}, engine=engine)
    sign_in(app)
    pick_queue(app, "tickets")
    assert any(c.value == evil for c in app.code)
    assert not any(evil in m.value for m in app.markdown)


def test_browse_dashboard_exports_pages(app, engine):
    sign_in(app)
    for page in ("Browse", "Dashboard", "Exports"):
        app.sidebar.radio[0].set_value(page).run()
        assert not app.exception, page
    app.sidebar.radio[0].set_value("Exports").run()
    button(app, "Run export").click().run()
    assert not app.exception
