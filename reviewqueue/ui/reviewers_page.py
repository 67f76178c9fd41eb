"""Reviewers: how much reviewers agree, and each reviewer's figures (agreement.py).

For leads and admins. Charts are Altair (Vega-Lite): reviewer names are drawn as SVG
text, never as HTML or markdown.
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from reviewqueue import agreement, cache, clock, queues
from reviewqueue.ui import session
from reviewqueue.ui.common import busiest_first, engine, plain
from reviewqueue.vocab import Role

#: Seconds a computed report is reused.
REPORT_MAX_AGE = 30.0
WINDOWS = {"Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90, "All time": None}


def _report(queue: str, days: int | None) -> agreement.AgreementReport:
    eng = engine()
    since = None
    if days is not None:  # whole hours, so the cache key holds for a while
        since = (clock.now() - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return cache.fresh(
        ("agreement", str(eng.url), queue, since),
        REPORT_MAX_AGE,
        lambda: agreement.report(queue, since=since, engine=eng),
    )


def _figure(value, fmt) -> str:
    return "-" if value.estimate is None else fmt(value.estimate)


def _interval(value, fmt) -> str:
    if value.estimate is None:
        return "no item has two decisions in this window"
    return f"{fmt(value.low)} to {fmt(value.high)} (95% interval)"


def render() -> None:
    if not session.at_least(Role.LEAD):  # not offered to others; this guards direct calls
        st.error("Leads and admins only.")
        return
    st.header("Reviewers")
    names, first = busiest_first(queues.overview(engine=engine()), several_reviews=True)
    if not names:
        st.info("There are no queues yet.")
        return
    c1, c2 = st.columns(2)
    queue = c1.selectbox("Queue", names, index=first, key="rq_reviewers_queue")
    window = c2.selectbox("Decisions made", list(WINDOWS), index=1, key="rq_reviewers_window")
    rep = _report(queue, WINDOWS[window])
    st.caption(
        f"{rep.reviews_required} review(s) per item; decisions compared on {rep.compared_on}. "
        f"{rep.units:,} items with two or more decisions ({rep.decisions:,} decisions)."
    )
    m = st.columns(4)
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    three = lambda v: f"{v:.3f}"  # noqa: E731
    m[0].metric(
        "Percent agreement",
        _figure(rep.percent_agreement, pct),
        help=_interval(rep.percent_agreement, pct),
    )
    m[1].metric(
        "Krippendorff's alpha",
        _figure(rep.alpha, three),
        help=_interval(rep.alpha, three)
        + ". 1 is perfect agreement, 0 what chance alone would give; below 0.667 is usually too low to trust.",
    )
    m[2].metric("Disputes waiting", rep.disputes_open)
    m[3].metric("Settled by a lead", rep.adjudicated)
    if rep.percent_agreement.estimate is not None:
        st.text(
            f"Percent agreement {_interval(rep.percent_agreement, pct)}; alpha {_interval(rep.alpha, three)}."
        )
    if not rep.reviewers:
        st.info("Nobody has decided anything in this queue in this window.")
        return
    table = pd.DataFrame(
        [
            {
                "reviewer": plain(r.reviewer),
                "decisions": r.decisions,
                "median seconds": r.median_seconds,
                "agrees with final": r.agreement_with_final,
                "compared": r.compared,
                "overturned by a lead": r.overturned,
                "today": r.today,
                "this week": r.this_week,
            }
            for r in rep.reviewers
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "agrees with final": st.column_config.NumberColumn(format="percent"),
            "median seconds": st.column_config.NumberColumn(format="%.0f"),
        },
    )
    left, right = st.columns(2)
    with left:
        st.text("Progress: decisions today and this week")
        progress = table.melt(
            id_vars="reviewer", value_vars=["today", "this week"], var_name="period", value_name="count"
        )
        st.altair_chart(
            alt.Chart(progress)
            .mark_bar()
            .encode(
                y=alt.Y("reviewer:N", title=None),
                x=alt.X("count:Q", title="decisions"),
                color=alt.Color("period:N", title=None),
                yOffset="period:N",
                tooltip=["reviewer", "period", "count"],
            ),
            width="stretch",
        )
    with right:
        st.text("Agreement with the final decision")
        compared = table[table["compared"] > 0]
        if compared.empty:
            st.caption("No item of this queue had several decisions or a lead's decision yet.")
        else:
            st.altair_chart(
                alt.Chart(compared)
                .mark_bar()
                .encode(
                    y=alt.Y("reviewer:N", title=None),
                    x=alt.X("agrees with final:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
                    tooltip=["reviewer", "agrees with final", "compared", "overturned by a lead"],
                ),
                width="stretch",
            )
