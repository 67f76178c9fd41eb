"""Review: claim, read, decide, next. Keyboard first: A approve, Ctrl+Enter submit a
correction, X reject, S skip, U undo."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from reviewqueue import queues, review, store
from reviewqueue.errors import Conflict, LeaseLost, ReviewQueueError
from reviewqueue.schemas import ItemOut
from reviewqueue.textdiff import word_diff
from reviewqueue.ui.common import age, as_text, engine, show, user
from reviewqueue.vocab import WAITING, Route, Status, Verdict

ROUTE_TEXT = {
    Route.BELOW_THRESHOLD: "confidence below the queue's threshold",
    Route.LABEL_THRESHOLD: "confidence below this label's threshold",
    Route.AUDIT_SAMPLE: "random audit sample (confidence above threshold)",
    Route.AUTO_ACCEPTED: "auto-accepted",
}
KEYS = "Keys: A approve · Ctrl+Enter submit correction · X reject · S skip · U undo"


def _state():
    ss = st.session_state
    ss.setdefault("rq_item", None)
    ss.setdefault("rq_done", 0)
    ss.setdefault("rq_last_review", None)
    ss.setdefault("rq_notice", None)
    ss.setdefault("rq_lost_draft", None)
    ss.setdefault("rq_preview", None)
    ss.setdefault("rq_skipped", [])
    return ss


def leave() -> None:
    """Give back the item on screen (sign-out, queue change)."""
    ss = st.session_state
    item = ss.get("rq_item")
    if item and user():
        try:
            review.release(item["id"], user()["name"], engine=engine())
        except ReviewQueueError:
            pass
    ss["rq_item"] = None
    ss["rq_lost_draft"] = None


def _claim(queue: str):
    ss = _state()
    item = review.claim_next(queue, user()["name"], exclude=ss.rq_skipped[-500:], engine=engine())
    ss.rq_item = item.model_dump() if item else None
    ss.rq_started = time.monotonic()
    ss.rq_preview = None


def _lost(exc: Exception, draft: str | None) -> None:
    ss = _state()
    ss.rq_notice = ("warning", f"{exc} Your text is kept below until you leave this page.")
    if draft is not None:
        ss.rq_lost_draft = draft
    ss.rq_item = None


@st.fragment(run_every=60)
def _keep_lease() -> None:
    """Renew the lease while the reviewer works on the item."""
    item = st.session_state.get("rq_item")
    if not item:
        return
    try:
        renewed = review.renew(item["id"], user()["name"], engine=engine())
        item["lease_expires_at"] = renewed.lease_expires_at
    except (LeaseLost, Conflict) as exc:
        _lost(exc, st.session_state.get(f"edit-{item['id']}"))
        st.rerun()


def render() -> None:
    ss = _state()
    st.header("Review")
    overview = queues.overview(engine=engine())
    if not overview:
        st.info("There are no queues yet. An admin can create one on the Admin page.")
        return
    by_name = {q.name: q for q in overview}
    names = list(by_name)
    last = ss.get("rq_queue")
    index = names.index(last) if last in by_name else (0 if len(names) == 1 else None)

    # Counts change on every run, so they stay out of the options: a widget whose
    # options change is a new widget to Streamlit, and would lose the selection.
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "queue": q.name,
                    "pending": q.counts.get(Status.PENDING, 0),
                    "in review": q.counts.get(Status.IN_REVIEW, 0),
                    "oldest waiting": age(q.oldest_pending_at),
                }
                for q in overview
            ]
        ),
        hide_index=True,
        height=min(36 * (len(overview) + 1) + 3, 220),
    )
    choice = st.selectbox("Queue", names, index=index, placeholder="Choose a queue")
    if choice is None:
        return
    if choice != last:
        leave()
        ss.rq_queue = choice
    q = by_name[choice]

    if ss.rq_notice:
        kind, text = ss.rq_notice
        getattr(st, kind)(text)
        ss.rq_notice = None
    if ss.rq_lost_draft is not None:
        st.text_area("Your unsaved text (copy it before leaving)", ss.rq_lost_draft, key="lost-draft")

    if ss.rq_item is None or ss.rq_item["queue"] != choice:
        _claim(choice)
    item = ss.rq_item
    left = sum(q.counts.get(s, 0) for s in WAITING)
    st.text(f"Decided this session: {ss.rq_done} · waiting in {choice}: {left}")
    _undo_button()
    if item is None:
        if ss.rq_skipped:
            st.info(f"Only items you skipped are left ({len(ss.rq_skipped)}).")
            if st.button("Show skipped items again"):
                ss.rq_skipped = []
                st.rerun()
        else:
            st.success("Nothing is waiting in this queue. New items appear here as they arrive.")
        if st.button("Check again"):
            st.rerun()
        return
    _keep_lease()
    _show_item(item)
    _decision_form(q, item)
    st.caption(KEYS)


def _show_item(item: dict) -> None:
    cols = st.columns(4)
    cols[0].text(f"Model: {item['model'] or '-'} {item['model_version'] or ''}")
    cols[1].text(f"Confidence: {item['confidence']:.3f}")
    cols[2].text(f"Why: {ROUTE_TEXT.get(item['route'], item['route'])}")
    cols[3].text(f"Age: {age(item['created_at'])}")
    st.subheader("Input")
    show(item["input"])
    if item["context"]:
        with st.expander(f"Retrieved sources ({len(item['context'])})"):
            for n, source in enumerate(item["context"], 1):
                st.text(f"[{n}] {source.get('title') or '(untitled)'}")
                if source.get("url"):
                    st.code(source["url"], language=None)
                show(source.get("text", ""))
    st.subheader("Model output")
    show(item["output"])
    if item["predicted_label"] is not None:
        st.text(f"Predicted label: {item['predicted_label']}")


def _decision_form(q, item: dict) -> None:
    ss = _state()
    original = as_text(item["output"])
    with st.form(f"decide-{item['id']}", border=True):
        label = None
        if q.labels:
            default = q.labels.index(item["predicted_label"]) if item["predicted_label"] in q.labels else None
            label = st.selectbox("Label", q.labels, index=default, key=f"label-{item['id']}")
        draft = st.text_area("Corrected output", original, height=180, key=f"edit-{item['id']}")
        reason = st.selectbox(
            "Reject reason",
            q.reject_reasons,
            index=None,
            placeholder="Pick a reason to reject",
            key=f"reason-{item['id']}",
        )
        comment = st.text_input("Comment (optional)", key=f"comment-{item['id']}")
        c1, c2, c3, c4 = st.columns(4)
        approve = c1.form_submit_button("Approve", type="primary", shortcut="A", width="stretch")
        correct = c2.form_submit_button("Submit correction", shortcut="Ctrl+Enter", width="stretch")
        reject = c3.form_submit_button("Reject", shortcut="X", width="stretch")
        skip = c4.form_submit_button("Skip", shortcut="S", width="stretch")

    preview = ss.rq_preview
    if preview and preview[0] == item["id"]:
        st.text("Your correction, word by word ([-removed-] {+added+}):")
        st.code(word_diff(original, preview[1]) or "(no change)", language=None, wrap_lines=True)

    elapsed = round(time.monotonic() - ss.get("rq_started", time.monotonic()), 1)
    decision = None
    if approve:
        decision = {"verdict": Verdict.APPROVE, "comment": comment or None}
    elif reject:
        decision = {"verdict": Verdict.REJECT, "reason": reason, "comment": comment or None}
    elif correct:
        final_output = draft
        if not isinstance(item["output"], str):
            try:
                final_output = json.loads(draft)
            except ValueError as exc:
                st.error(f"The original output is JSON, so the correction must be valid JSON: {exc}")
                return
        changed_label = label if (label is not None and label != item["predicted_label"]) else None
        output_changed = final_output != item["output"]
        if output_changed and ss.rq_preview != (item["id"], draft):
            ss.rq_preview = (item["id"], draft)  # show the diff first; the next press submits
            st.rerun()
        decision = {
            "verdict": Verdict.CORRECT,
            "final_output": final_output if output_changed else None,
            "final_label": changed_label,
            "comment": comment or None,
        }
    elif skip:
        try:
            review.release(item["id"], user()["name"], engine=engine())
        except ReviewQueueError:
            pass
        ss.rq_skipped.append(item["id"])
        ss.rq_item = None
        st.rerun()
    if decision is None:
        return
    decision["seconds_spent"] = elapsed
    try:
        rv = review.decide(item["id"], user()["name"], decision, engine=engine())
    except LeaseLost as exc:
        _lost(exc, draft if draft != original else None)
        st.rerun()
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    ss.rq_done += 1
    ss.rq_last_review = {"id": rv.id, "item_id": item["id"], "at": time.monotonic(), "verdict": rv.verdict}
    ss.rq_item = None
    ss.rq_preview = None
    st.rerun()


def _undo_button() -> None:
    ss = _state()
    last = ss.rq_last_review
    if not last or time.monotonic() - last["at"] > store.settings_of(engine()).undo_seconds:
        return
    if st.button(f"Undo last decision ({last['verdict']})", shortcut="U"):
        try:
            item = review.undo(last["id"], user()["name"], engine=engine())
        except ReviewQueueError as exc:
            st.error(str(exc))
            ss.rq_last_review = None
            return
        if ss.rq_item and ss.rq_item["id"] != item.id:
            try:
                review.release(ss.rq_item["id"], user()["name"], engine=engine())
            except ReviewQueueError:
                pass
        ss.rq_item = ItemOut.model_validate(item).model_dump()
        ss.rq_done -= 1
        ss.rq_last_review = None
        ss.rq_notice = ("info", "Decision undone; the item is back with you.")
        st.rerun()
