"""Browse: filter, page through and open items. Paging and counting happen in the
database (a page is one indexed query); nothing loads a whole table. Click a row to
open the item: its content, its decision and its history in sentences."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from reviewqueue import events, items, queues, users
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui.common import ROUTE_TEXT, as_text, engine, plain, show, stored_files, warn_hidden
from reviewqueue.vocab import Status, Verdict

PAGE_SIZE = 50
COUNT_CAP = 100_000
SNIPPET = 80


def _snippet(value) -> str:
    text = " ".join(as_text(value).split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def render() -> None:
    st.header("Browse")
    eng = engine()
    # Folded, so the table starts near the top; the filters apply whether open or not.
    with st.expander("Filters"), st.form("filters", enter_to_submit=True):
        c1, c2, c3, c4 = st.columns(4)
        qs = c1.multiselect("Queues", queues.names(engine=eng))
        statuses = c2.multiselect("Status", list(Status))
        verdicts = c3.multiselect("Verdict", list(Verdict))
        reviewers = c4.multiselect("Decided by", [u.name for u in users.all_users(engine=eng)])
        c5, c6, c7 = st.columns(3)
        model = c5.text_input("Model")
        version = c6.text_input("Model version")
        conf = c7.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01)
        c8, c9 = st.columns(2)
        dates = c8.date_input("Created between", value=(), format="YYYY-MM-DD")
        text = c9.text_input("Search input and output")
        st.form_submit_button("Apply filters")
    flt = items.ItemFilter(
        queues=qs or None,
        statuses=statuses or None,
        verdicts=verdicts or None,
        reviewers=reviewers or None,
        models=[model] if model else None,
        model_versions=[version] if version else None,
        min_confidence=conf[0] if conf[0] > 0 else None,
        max_confidence=conf[1] if conf[1] < 1 else None,
        created_from=datetime.combine(dates[0], time.min, tzinfo=UTC) if len(dates) >= 1 else None,
        created_to=datetime.combine(dates[1], time.max, tzinfo=UTC) if len(dates) == 2 else None,
        text=text or None,
    )
    total = items.count(flt, engine=eng, cap=COUNT_CAP)
    pages = max(1, -(-total // PAGE_SIZE))
    shown = f"{total:,}" if total < COUNT_CAP else f"more than {COUNT_CAP:,}"
    page = st.number_input(f"Page (of {pages:,}; {shown} matching items)", 1, pages, 1)
    rows = items.page(flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, engine=eng)
    if not rows:
        st.info("No items match these filters.")
        return
    by = items.deciders([r.id for r in rows], engine=eng)
    table = pd.DataFrame(
        [
            {
                "created": r.created_at,
                "queue": r.queue,
                "status": r.status,
                "confidence": round(r.confidence, 3),
                "input": _snippet(r.input),
                "output": _snippet(r.output),
                "decided by": by.get(r.id, ""),
                "model": plain(r.model),
                "version": plain(r.model_version),
                "route": r.route,
                "id": r.id,
            }
            for r in rows
        ]
    )
    picked = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        # A click anywhere in a row opens it, not only on the narrow checkbox.
        selection_mode=["single-row", "single-cell"],
        key=f"browse-{page}",
    )
    selection = picked.selection if picked is not None else None
    selected = list(selection.rows) if selection else []
    if not selected and selection and selection.get("cells"):
        selected = [selection["cells"][0][0]]
    if selected:
        _detail(rows[selected[0]].id)
    else:
        st.caption("Click a row to open the item.")


def _detail(item_id: str) -> None:
    try:
        it = items.get(item_id, engine=engine())
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    st.subheader("Item")
    warn_hidden(it.input, it.output, it.context, it.metadata, it.model, it.model_version, it.predicted_label)
    facts = it.model_dump(exclude={"input", "output", "context", "metadata", "decision"})
    st.dataframe(pd.DataFrame([{"field": k, "value": plain(v)} for k, v in facts.items()]), hide_index=True)
    left, right = st.columns(2)
    with left:
        st.text("Input")
        show(it.input, height=240)
        if it.context:
            st.text("Retrieved sources")
            show([{k: v for k, v in c.items() if k != "data"} for c in it.context], height=200)
            stored_files(it.id, it.context, downloads=True)
    with right:
        st.text("Output")
        show(it.output, height=240)
        if it.decision:
            d = it.decision
            by = "the deadline fallback (no reviewer in time)" if d.source == "deadline" else d.reviewer
            st.text(f"Decision: {d.verdict} by {by}" + (f" · reason {plain(d.reason)}" if d.reason else ""))
            if d.verdict == Verdict.CORRECT:
                st.text("Corrected output" + (f" · label {plain(d.final_label)}" if d.final_label else ""))
                show(d.final_output, height=160)
            if d.comment:
                st.text("Comment")
                show(d.comment)
        else:
            st.text("Not decided yet")
        if it.deadline_at:
            st.text(
                f"Deadline {it.deadline_at:%Y-%m-%d %H:%M:%S} UTC"
                + (f" · {it.deadline_action}" if it.deadline_action else "")
            )
        if it.late_decision:
            late = it.late_decision
            st.text(f"Decided after the deadline: {late.verdict} by {late.reviewer}")
            if late.verdict == Verdict.CORRECT:
                show(late.final_output, height=160)
    if it.metadata:
        st.text("Metadata")
        show(it.metadata)
    st.text("History")
    history = events.history(item_id, engine=engine())
    # Arrival is the item's own row (ingest writes no event per item: it is the hot path).
    model = " ".join(x for x in (plain(it.model), plain(it.model_version)) if x) or "an app"
    arrived = {
        "at": it.created_at,
        "what": f"arrived from {model}, confidence {it.confidence:.3f}: {ROUTE_TEXT.get(it.route, it.route)}",
    }
    st.dataframe(
        pd.DataFrame([arrived, *({"at": e.at, "what": plain(events.describe(e))} for e in history)]),
        hide_index=True,
        width="stretch",
    )
