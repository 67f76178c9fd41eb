"""Browse: filter, page through and open items. Paging and counting happen in the
database (a page is one indexed query); nothing loads a whole table."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from reviewqueue import events, items, queues
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui.common import as_text, engine, show
from reviewqueue.vocab import Status, Verdict

PAGE_SIZE = 50
COUNT_CAP = 100_000


def render() -> None:
    st.header("Browse")
    eng = engine()
    with st.form("filters"):
        c1, c2, c3 = st.columns(3)
        qs = c1.multiselect("Queues", queues.names(engine=eng))
        statuses = c2.multiselect("Status", list(Status))
        verdicts = c3.multiselect("Verdict", list(Verdict))
        c4, c5, c6 = st.columns(3)
        model = c4.text_input("Model")
        version = c5.text_input("Model version")
        conf = c6.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01)
        c7, c8 = st.columns(2)
        dates = c7.date_input("Created between", value=(), format="YYYY-MM-DD")
        text = c8.text_input("Search input and output")
        st.form_submit_button("Apply filters")
    flt = items.ItemFilter(
        queues=qs or None,
        statuses=statuses or None,
        verdicts=verdicts or None,
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
    table = pd.DataFrame(
        [
            {
                "id": r.id,
                "queue": r.queue,
                "status": r.status,
                "route": r.route,
                "confidence": round(r.confidence, 3),
                "model": r.model,
                "version": r.model_version,
                "created": r.created_at,
                "output": as_text(r.output)[:120],
            }
            for r in rows
        ]
    )
    if table.empty:
        st.info("No items match these filters.")
        return
    st.dataframe(table, hide_index=True, width="stretch")
    chosen = st.selectbox("Open item", [r.id for r in rows], index=None, placeholder="Pick an item id")
    if chosen:
        _detail(chosen)


def _detail(item_id: str) -> None:
    try:
        it = items.get(item_id, engine=engine())
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    st.subheader("Item")
    st.dataframe(
        pd.DataFrame(
            [
                {"field": k, "value": str(v)}
                for k, v in it.model_dump(
                    exclude={"input", "output", "context", "metadata", "decision"}
                ).items()
            ]
        ),
        hide_index=True,
    )
    st.text("Input")
    show(it.input)
    st.text("Output")
    show(it.output)
    if it.context:
        st.text("Context sources")
        st.json(it.context)
    if it.metadata:
        st.text("Metadata")
        st.json(it.metadata)
    st.text("Decision")
    if it.decision:
        st.json(it.decision.model_dump(mode="json"))
    else:
        st.text("not decided")
    st.text("History")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "at": e.at,
                    "actor": e.actor,
                    "event": e.kind,
                    "before": str(e.before or ""),
                    "after": str(e.after or ""),
                }
                for e in events.history(item_id, engine=engine())
            ]
        ),
        hide_index=True,
        width="stretch",
    )
