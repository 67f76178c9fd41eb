"""Adjudicate: items whose reviewers disagree, for a lead (or an admin) to settle.

The item and all its decisions side by side (verdict, label, reason, comment, the
correction with its diff against the model output); the lead takes one decision as
final or writes their own (``decisions.adjudicate``). Everything shown that a model, an
app or a reviewer wrote is inert text.
"""

from __future__ import annotations

import streamlit as st

from reviewqueue import queues, review
from reviewqueue.errors import ReviewQueueError
from reviewqueue.textdiff import diff_lines
from reviewqueue.ui import session
from reviewqueue.ui.common import age, as_text, engine, plain, review_details, show, warn_hidden
from reviewqueue.vocab import Role, Status, Verdict

_FLASH = "rq_adjudicate_flash"


def render() -> None:
    if not session.at_least(Role.LEAD):  # not offered to others; this guards direct calls
        st.error("Leads and admins only.")
        return
    st.header("Adjudicate")
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    overview = queues.overview(engine=engine())
    waiting = {q.name: q.counts.get(Status.DISPUTED, 0) for q in overview}
    if not overview:
        st.info("There are no queues yet.")
        return
    names = [q.name for q in overview]
    first = next((n for n in names if waiting[n]), names[0])
    queue = st.selectbox(
        "Queue",
        names,
        index=names.index(first),
        format_func=lambda n: f"{n} ({waiting[n]} disputed)",
        key="rq_adjudicate_queue",
    )
    disputes = review.disputes(queue, limit=50, engine=engine())
    if not disputes:
        st.success("No disagreements wait in this queue.")
        return
    st.caption(f"{len(disputes)} item(s) shown, oldest first. Pick a decision or write your own.")
    item = st.selectbox(
        "Item",
        disputes,
        format_func=lambda i: f"{i.id} · {len(i.reviews)} decisions · waiting {age(i.updated_at)}",
        key=f"rq_adjudicate_item_{queue}",
    )
    _settle(queues.get(queue, engine=engine()), item)


def _settle(q, item) -> None:
    st.text(
        f"Item {item.id}  ·  model {plain(item.model) or '-'} {plain(item.model_version)}  ·  "
        f"confidence {item.confidence:.3f}"
        + (f"  ·  predicted label {plain(item.predicted_label)}" if item.predicted_label else "")
    )
    warn_hidden(item.input, item.output, item.model, item.model_version, item.predicted_label)
    left, right = st.columns(2)
    with left:
        st.text("Input")
        show(item.input, height=200)
    with right:
        st.text("Model output")
        show(item.output, height=200)
    votes = [r for r in item.reviews if r.undone_at is None and not r.adjudication]
    st.subheader("Decisions")
    original = as_text(item.output)
    for col, r in zip(st.columns(len(votes)), votes, strict=True):
        with col:
            st.text(f"{plain(r.reviewer)}: {r.verdict}")
            details = review_details(r)
            if details:
                st.text("\n".join(details))
            if r.verdict == Verdict.CORRECT and r.final_output is not None and not q.labels:
                st.code(
                    diff_lines(original, as_text(r.final_output)) or "(no change)",
                    language="diff",
                    wrap_lines=True,
                    height=160,
                )
            if st.button(f"Take {r.reviewer}'s decision", key=f"pick-{r.id}", width="stretch"):
                _try(lambda r=r: review.adjudicate(item.id, session.name(), pick=r.id, engine=engine()), item)
    st.subheader("Or your own decision")
    with st.form(f"own-{item.id}", enter_to_submit=False):
        verdict = st.radio("Verdict", list(Verdict), horizontal=True)
        label = output = reason = None
        if q.labels:
            label = st.selectbox("Label (for correct)", q.labels)
        else:
            output = st.text_area("Corrected output (for correct)", original, height=150)
        if q.reject_reasons:
            reason = st.selectbox("Reject reason (for reject)", q.reject_reasons)
        comment = st.text_input("Comment (optional)")
        if st.form_submit_button("Settle with my decision", type="primary"):
            decision: dict = {"verdict": verdict, "comment": comment or None}
            if verdict == Verdict.CORRECT:
                decision.update({"final_label": label} if q.labels else {"final_output": output})
            elif verdict == Verdict.REJECT:
                decision["reason"] = reason
            _try(lambda: review.adjudicate(item.id, session.name(), decision, engine=engine()), item)


def _try(action, item) -> None:
    try:
        done = action()
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    st.session_state[_FLASH] = f"Item {done.id} settled: {done.status}."
    st.rerun()
