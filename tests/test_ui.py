"""The review app's pages and actions, headless (streamlit.testing AppTest).

Pages are run on their own with a signed-in session (``page_app``). Signing in is a form
and a cookie beside the app (tests/test_sessions.py over HTTP, tests/test_browser.py in
a browser): AppTest cannot send a cookie, so here the app script is only run without one.
"""

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from reviewqueue import ingest, items, queues, review, users
from reviewqueue.vocab import Role

from .conftest import item

APP = str(Path(__file__).parent.parent / "reviewqueue" / "ui" / "app.py")


@pytest.fixture
def seeded(db_url, engine):
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
            "description": "Check the refund policy first.",
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
    yield engine
    st.cache_resource.clear()


def _page_script(module: str) -> None:
    import importlib

    importlib.import_module(f"reviewqueue.ui.{module}").render()


def page_app(module: str, user: str = "rita", role: Role = Role.REVIEWER) -> AppTest:
    import time

    at = AppTest.from_function(_page_script, args=(module,), default_timeout=30)
    at.session_state["user"] = {"name": user, "role": role, "since": time.time(), "seen": time.time()}
    return at


@pytest.fixture
def review_app(seeded):
    return page_app("review_page")


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def pick_queue(at: AppTest, name: str) -> AppTest:
    at.run()
    at.session_state["rq_queue"] = name
    return at.run()


def current_id(at: AppTest) -> str:
    item = at.session_state["rq_item"]
    assert item is not None, (
        f"no item on screen; exceptions: {[e.value for e in at.exception]}, "
        f"warnings: {[w.value for w in at.warning]}, text: {[t.value for t in at.text]}"
    )
    return item["id"]


# --- sign-in and sessions -------------------------------------------------------------


def test_the_app_without_a_session_sends_the_browser_to_sign_in(seeded):
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "You are signed out." in at.info[0].value
    assert not at.sidebar.text  # no pages, no account
    assert any("/rq/sign-in?next=" in h.proto.body for h in at.get("html"))


def test_pages_follow_the_role(seeded):
    import reviewqueue.ui.app  # noqa: F401  (the script's module imports cleanly)
    from reviewqueue import policies

    assert not policies.may_export(Role.REVIEWER, feed=False, engine=seeded)
    assert policies.may_export(Role.LEAD, feed=False, engine=seeded)
    assert not policies.may_export(Role.LEAD, feed=True, engine=seeded)
    assert policies.may_export(Role.ADMIN, feed=True, engine=seeded)


# --- the review page --------------------------------------------------------------------


def test_approve_then_next_item_is_on_screen_in_one_run(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Approve").click().run()
    assert items.get(first, engine=seeded).status == "approved"
    assert current_id(at) != first
    assert "You: 1 today" in " ".join(t.value for t in at.text)
    assert any("Check the refund policy first." in t.value for t in at.text)  # the queue's guidelines


def test_a_key_that_reaches_the_page_drawn_for_the_item_before_decides_nothing(review_app, seeded):
    """A key typed ahead (or replayed by ui/keys.py) can reach the page drawn for the item
    the reviewer saw after that item was decided: the server must not apply it to the
    next item, which nobody has looked at."""
    at = pick_queue(review_app, "support")
    first = current_id(at)
    approve_on_first = button(at, "Approve")
    approve_on_first.click().run()
    second = current_id(at)
    assert second != first and items.get(first, engine=seeded).status == "approved"
    approve_on_first.click().run()  # the same press again, from the page of the first item
    assert items.get(second, engine=seeded).status == "in_review"
    assert current_id(at) == second
    button(at, "Approve").click().run()  # from the page that shows it, it counts
    assert items.get(second, engine=seeded).status == "approved"


def test_correct_shows_diff_then_saves(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    assert not at.text_area  # the editor opens on E
    button(at, "Correct").click().run()
    at.text_area(key=f"rq_edit_{first}").input("draft answer 0 with a fix")
    button(at, "Submit correction").click().run()
    assert items.get(first, engine=seeded).status == "in_review"  # the diff is shown first
    assert any("+ with a fix" in c.value for c in at.code)
    button(at, "Submit correction").click().run()
    got = items.get(first, engine=seeded)
    assert got.status == "corrected" and got.decision.final_output == "draft answer 0 with a fix"


def test_a_correction_that_changes_nothing_is_explained(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Correct").click().run()
    button(at, "Submit correction").click().run()
    assert items.get(first, engine=seeded).status == "in_review"
    assert "Nothing changed yet" in at.warning[0].value and "final_output" not in at.warning[0].value


def test_classification_queue_corrects_the_label_with_a_number_key(review_app, seeded):
    ingest.submit(
        {
            "queue": "tickets",
            "input": "app crashes",
            "output": "billing",
            "predicted_label": "billing",
            "confidence": 0.2,
        },
        engine=seeded,
    )
    at = pick_queue(review_app, "tickets")
    first = current_id(at)
    assert not at.text_area  # the correction is the label: no text box
    label_buttons = [b for b in at.button if b.label.startswith("bug")]
    assert label_buttons and label_buttons[0].proto.shortcut == "2"
    label_buttons[0].click().run()
    button(at, "Submit correction").click().run()
    got = items.get(first, engine=seeded)
    assert got.status == "corrected" and got.decision.final_label == "bug"
    assert got.decision.final_output == "bug"  # the reference never contradicts the label


def test_reject_then_a_reason_number_rejects_with_the_comment(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    assert not [b for b in at.button if b.label.startswith("harmful")]  # reasons come after X
    button(at, "Comment").click().run()
    at.text_input(key=f"rq_comment_{first}").input("unsafe advice")
    button(at, "Close").click().run()  # Esc: the box goes, the text stays
    button(at, "Reject").click().run()
    reason = next(b for b in at.button if b.label.startswith("harmful"))
    assert reason.proto.shortcut == "2"
    reason.click().run()
    got = items.get(first, engine=seeded)
    assert (
        got.status == "rejected"
        and got.decision.reason == "harmful"
        and got.decision.comment == "unsafe advice"
    )


def test_back_from_reject_and_discard_drop_nothing_by_accident(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Correct").click().run()
    at.text_area(key=f"rq_edit_{first}").input("half a fix")
    button(at, "Close").click().run()
    button(at, "Reject").click().run()
    button(at, "Back").click().run()
    button(at, "Correct").click().run()
    assert at.text_area(key=f"rq_edit_{first}").value == "half a fix"  # kept through all that
    button(at, "Discard my text").click().run()
    button(at, "Correct").click().run()
    assert at.text_area(key=f"rq_edit_{first}").value == "draft answer 0"
    assert items.get(first, engine=seeded).status == "in_review"


def test_reject_without_a_reason_asks_for_one(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Reject").click().run()
    assert items.get(first, engine=seeded).status == "in_review"
    assert "which reason" in at.warning[0].value
    next(b for b in at.button if b.label.startswith("incorrect")).click().run()  # a number key now rejects
    got = items.get(first, engine=seeded)
    assert got.status == "rejected" and got.decision.reason == "incorrect"


def test_skip_releases(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Skip").click().run()
    assert current_id(at) != first
    assert items.get(first, engine=seeded).status == "pending"


def test_undo_brings_the_item_back(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Approve").click().run()
    button(at, "Undo approve").click().run()
    assert current_id(at) == first
    got = items.get(first, engine=seeded)
    assert got.status == "in_review" and got.lease_holder == "rita" and got.decision is None


def test_the_app_holds_its_item_under_a_short_lease(review_app, seeded):
    at = pick_queue(review_app, "support")
    got = items.get(current_id(at), engine=seeded)
    seconds = (got.lease_expires_at - got.updated_at).total_seconds()
    assert seconds == pytest.approx(60, abs=1)  # the queue's 60 s is shorter than the app's 120 s


def test_expired_lease_taken_by_someone_else(review_app, seeded, fake_clock):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Correct").click().run()
    fake_clock.advance(61)
    taken = review.claim_next("support", "otto", engine=seeded)
    assert taken.id == first
    at.text_area(key=f"rq_edit_{first}").input("my careful rewrite")
    button(at, "Approve").click().run()
    assert any("otto" in w.value for w in at.warning)
    assert at.text_area(key="lost-draft").value == "my careful rewrite"
    assert current_id(at) != first
    assert items.get(first, engine=seeded).lease_holder == "otto"


def test_untrusted_output_is_rendered_as_code_not_markdown(review_app, seeded):
    evil = "![x](http://127.0.0.1:9/pixel.png) <img src=x onerror=alert(1)> **bold**"
    ingest.submit({"queue": "tickets", "input": evil, "output": evil, "confidence": 0.1}, engine=seeded)
    at = pick_queue(review_app, "tickets")
    assert any(c.value == evil for c in at.code)
    assert not any(evil in m.value for m in at.markdown)


def test_hidden_characters_are_shown_and_warned_about(review_app, seeded):
    ingest.submit(
        {
            "queue": "support",
            "input": "q",
            "output": "Refund \u202e!devorppa\u202c",
            "model": "m\u202eevil",
            "confidence": 0.01,
        },
        engine=seeded,
    )
    at = pick_queue(review_app, "support")
    assert any(c.value == "Refund ⟨U+202E⟩!devorppa⟨U+202C⟩" for c in at.code)
    assert any("m⟨U+202E⟩evil" in t.value for t in at.text)
    assert "U+202E" in at.warning[0].value


# --- the other pages --------------------------------------------------------------------


def test_browse_lists_snippets_and_who_decided(seeded):
    first = review.claim_next("support", "maria", engine=seeded)
    review.decide(first.id, "maria", {"verdict": "approve"}, engine=seeded)
    at = page_app("browse_page").run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert {"input", "output", "decided by"} <= set(frame.columns)
    assert frame.set_index("id").loc[first.id, "decided by"] == "maria"
    assert "Decided by" in [m.label for m in at.multiselect]


def _detail_script(item_id: str) -> None:
    from reviewqueue.ui import browse_page

    browse_page._detail(item_id)


def test_an_opened_item_shows_its_decision_and_history(seeded):
    held = review.claim_next("support", "maria", engine=seeded)
    review.decide(held.id, "maria", {"verdict": "reject", "reason": "harmful"}, engine=seeded)
    at = AppTest.from_function(_detail_script, args=(held.id,), default_timeout=30).run()
    assert not at.exception
    assert any("Decision: reject by maria" in t.value for t in at.text)
    history = at.dataframe[-1].value["what"].tolist()
    assert history[0] == "arrived from an app, confidence 0.100: confidence below the queue's threshold"
    assert history[-2:] == ["maria claimed it", "maria rejected it"]


def test_history_reads_as_sentences(seeded):
    from reviewqueue import events

    held = review.claim_next("support", "maria", engine=seeded)
    review.decide(held.id, "maria", {"verdict": "approve"}, engine=seeded)
    queues.update("support", {"threshold": 0.7}, actor="adam", engine=seeded)
    said = [events.describe(e) for e in events.history(held.id, engine=seeded)]
    assert "maria claimed it" in said and "maria approved it" in said
    from sqlalchemy import select

    from reviewqueue import store
    from reviewqueue.models import Event

    with store.read(seeded) as tx:
        change = tx.session.scalars(select(Event).where(Event.kind == "queue.updated")).one()
    assert events.describe(change) == "adam changed: threshold 0.8 → 0.7"


def test_dashboard_and_exports_pages(seeded):
    for module in ("dashboard_page", "exports_page"):
        at = page_app(module, "adam", Role.ADMIN).run()
        assert not at.exception, module
    at = page_app("exports_page", "rita", Role.REVIEWER).run()
    assert "may not run exports" in at.error[0].value


def test_admin_tables_show_what_was_just_saved(seeded):
    at = page_app("admin_page", "adam", Role.ADMIN).run()
    at.selectbox[0].select("support").run()
    form_threshold = next(n for n in at.number_input if n.label == "Threshold")
    form_threshold.set_value(0.7)
    button(at, "Save queue").click().run()
    assert not at.exception
    assert at.success[0].value == "Queue support saved."
    assert at.dataframe[0].value.set_index("queue").loc["support", "threshold"] == 0.7
    assert queues.get("support", engine=seeded).threshold == 0.7


def test_admin_sets_a_schema_field_thresholds_and_the_kind(seeded):
    at = page_app("admin_page", "adam", Role.ADMIN).run()
    at.selectbox[0].select("support").run()
    schema_box = next(t for t in at.text_area if t.label.startswith("Output schema"))
    schema_box.set_value("{not json")
    button(at, "Save queue").click().run()
    assert "not JSON" in at.error[0].value and queues.get("support", engine=seeded).output_schema is None
    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    next(t for t in at.text_area if t.label.startswith("Output schema")).set_value(json.dumps(schema))
    next(t for t in at.text_area if t.label.startswith("Field thresholds")).set_value("total=0.95")
    next(s for s in at.selectbox if s.label == "Kind of outputs").select("tool_call")
    button(at, "Save queue").click().run()
    assert not at.exception
    q = queues.get("support", engine=seeded)
    assert (q.output_schema, q.field_thresholds, q.kind) == (schema, {"total": 0.95}, "tool_call")


def test_an_idle_reviewer_gives_the_item_back_and_continues_on_a_key(review_app, seeded):
    import time

    at = pick_queue(review_app, "support")
    first = current_id(at)
    at.session_state["rq_seen"] = time.monotonic() - 61  # longer than the queue's 60 s lease
    at.run()
    assert items.get(first, engine=seeded).status == "pending"
    assert at.session_state["rq_item"] is None and "You were away" in at.info[0].value
    button(at, "Continue reviewing").click().run()
    assert current_id(at)


def test_quality_page_shows_charts_and_applies_the_recommendation(seeded):
    from .quality_sim import simulate

    simulate(seeded, "model", 6, n=600, kind="under", low=0.5, audit_rate=0.3)
    at = page_app("quality_page", user="adam", role=Role.ADMIN)
    at.session_state["rq_quality_queue"] = "model"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("vega_lite_chart")) == 3  # reliability, trade-off, reject reasons
    assert any("Error of unreviewed outputs" in m.label for m in at.metric)
    assert "Threshold" in at.success[0].value and "reviewer" not in at.error
    assert any(t.value.startswith("At 0.80 you review") for t in at.text)
    assert at.number_input(key="rq_quality_target_pct").value == 5.0  # percent, as the figures are
    button(at, "Apply recommended threshold").click().run()
    assert any("the threshold is now" in s.value for s in at.success)
    new = queues.get("model", engine=seeded).threshold
    assert new != 0.8
    # The page is drawn again with the new threshold everywhere, not the old one.
    assert any(f"threshold {new:g} ·" in c.value for c in at.caption)
    assert not any(c.value.startswith("threshold 0.8 ·") for c in at.caption)
    reviewer = page_app("quality_page")  # reviewers see the page, not the button
    reviewer.session_state["rq_quality_queue"] = "model"
    reviewer.run()
    assert not reviewer.exception and not [b for b in reviewer.button if b.label.startswith("Apply")]


# --- several reviewers per item ---------------------------------------------------------


def _disputed(engine) -> str:
    """An item of a two-reviewer queue on which ann and bob disagree."""
    from reviewqueue import review

    queues.create(
        "pair",
        {
            "threshold": 0.8,
            "audit_rate": 0.0,
            "reviews_required": 2,
            "reject_reasons": ["incorrect"],
            "guidelines": "## Refunds\nApprove only what **policy** allows.",
            "show_previous_reviews": True,
        },
        engine=engine,
    )
    [first] = ingest.submit_many([item(0, queue="pair", output="refund in 5 days")], engine=engine)
    for who, decision in (
        ("ann", {"verdict": "approve"}),
        ("bob", {"verdict": "correct", "final_output": "refund in 7 days"}),
    ):
        held = review.claim_next("pair", who, engine=engine)
        review.decide(held.id, who, decision, engine=engine)
    return first.id


def test_review_page_shows_guidelines_previous_decisions_and_only_assigned_queues(seeded):
    from reviewqueue import review

    queues.create(
        "pair",
        {
            "threshold": 0.8,
            "audit_rate": 0.0,
            "reviews_required": 2,
            "guidelines": "## Refunds\nApprove only what **policy** allows.",
            "show_previous_reviews": True,
        },
        engine=seeded,
    )
    [it] = ingest.submit_many([item(0, queue="pair")], engine=seeded)
    held = review.claim_next("pair", "ann", engine=seeded)
    review.decide(held.id, "ann", {"verdict": "approve", "comment": "fine"}, engine=seeded)
    at = pick_queue(page_app("review_page"), "pair")
    assert not at.exception, [e.value for e in at.exception]
    assert current_id(at) == it.id
    assert any("Refunds" in m.value for m in at.markdown)  # admin-written markdown
    assert any("ann: approve" in c.value and "comment fine" in c.value for c in at.code)
    queues.update("pair", {"reviewers": ["adam"]}, engine=seeded)  # rita is not among them
    at = page_app("review_page")
    at.run()
    picks = [b.label for b in at.button]
    assert not any(p.startswith("pair") for p in picks) and any(p.startswith("support") for p in picks)


def test_a_lead_settles_a_dispute_on_the_adjudicate_page(seeded):
    item_id = _disputed(seeded)
    users.add("lena", role="lead", password="lena-password", engine=seeded)
    reviewer = page_app("adjudicate_page")
    reviewer.run()
    assert reviewer.error and "Leads and admins only" in reviewer.error[0].value
    at = page_app("adjudicate_page", user="lena", role=Role.LEAD)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("+ 7" in c.value for c in at.code)  # bob's correction as a diff
    button(at, "Take bob's decision").click().run()
    assert not at.exception, [e.value for e in at.exception]
    got = __import__("reviewqueue").items.get(item_id, engine=seeded)
    assert got.status == "corrected" and got.decision.reviewer == "lena"
    assert got.decision.final_output == "refund in 7 days" and got.agreement == 0.5
    assert "settled" in at.success[0].value


def test_reviewers_page_shows_agreement_and_progress(seeded):
    _disputed(seeded)
    at = page_app("reviewers_page", user="adam", role=Role.ADMIN)
    at.session_state["rq_reviewers_queue"] = "pair"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label: m.value for m in at.metric}
    assert labels["Percent agreement"] == "0.0%" and labels["Disputes waiting"] == "1"
    assert len(at.get("vega_lite_chart")) == 1  # progress (nothing compared with a final yet)
    assert len(at.dataframe) == 1


def test_a_correction_with_hidden_characters_shows_them_and_warns(review_app, seeded):
    at = pick_queue(review_app, "support")
    first = current_id(at)
    button(at, "Correct").click().run()
    at.text_area(key=f"rq_edit_{first}").input("Refund \u202e!devorppa\u202c")
    button(at, "Submit correction").click().run()
    assert any("+ Refund ⟨U+202E⟩!devorppa⟨U+202C⟩" in c.value for c in at.code), [c.value for c in at.code]
    assert any("Your correction contains" in w.value and "U+202E" in w.value for w in at.warning)
    assert items.get(first, engine=seeded).status == "in_review"  # shown first, saved on the second press


def test_the_admin_page_stays_on_its_tab_after_a_save(seeded):
    at = page_app("admin_page", "adam", Role.ADMIN).run()
    assert at.session_state["rq_admin_tab"] == "Queues"  # the tabs are a widget with a state
    at.session_state["rq_admin_tab"] = "Users"  # as a click on "Users" sets it
    at.run()
    [name] = [t for t in at.text_input if t.label == "User name"]
    name.input("nora")
    [pw] = [t for t in at.text_input if t.label == "Initial password"]
    pw.input("nora-password-1")
    button(at, "Add user").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success[0].value == "User nora added."
    assert at.session_state["rq_admin_tab"] == "Users"


def test_a_deadline_shows_its_time_left_and_its_fallback_moves_the_reviewer_on(review_app, seeded):
    from datetime import timedelta

    from reviewqueue import clock, deadlines

    queues.update("support", {"on_deadline": "accept", "warn_seconds": 30}, engine=seeded)

    def due_item(n):
        due = clock.iso(clock.now() + timedelta(seconds=20))
        return ingest.submit(item(n, output=f"due soon {n}", priority=5, deadline=due), engine=seeded).id

    def fallback(item_id):
        with clock.travelling(lambda: clock.real_now() + timedelta(seconds=25)):
            assert deadlines.apply(item_id, engine=seeded) == "accept"

    first = due_item(50)
    at = pick_queue(review_app, "support")
    assert current_id(at) == first
    assert any("Due in" in m.value and ":red[" in m.value for m in at.markdown)  # under warn_seconds
    fallback(first)
    at.run()
    assert any("fallback accepted the model's output; here is the next item" in w.value for w in at.warning)
    assert current_id(at) != first
    got = items.get(first, engine=seeded)
    assert got.status == "timed_out" and got.decision.source == "deadline"

    # In the middle of a correction: told, the item and the editor stay, and the
    # correction is kept as a review made after the deadline.
    second = due_item(51)
    button(at, "Skip").click().run()
    assert current_id(at) == second
    button(at, "Correct").click().run()
    fallback(second)
    at.run()
    assert any("Finish your correction" in w.value for w in at.warning)
    assert current_id(at) == second
    at.text_area(key=f"rq_edit_{second}").input("my late fix")
    button(at, "Submit correction").click().run()  # the diff first
    button(at, "Submit correction").click().run()
    assert any("kept as a review made after the deadline" in i.value for i in at.info)
    got = items.get(second, engine=seeded)
    assert got.status == "timed_out" and got.late_decision.final_output == "my late fix"
    assert got.late_decision.after_deadline
