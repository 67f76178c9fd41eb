"""Dashboard: backlog by queue and age, decisions per day, time to decision."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from reviewqueue import metrics
from reviewqueue.ui.common import engine


def render() -> None:
    st.header("Dashboard")
    eng = engine()
    backlog = pd.DataFrame(metrics.backlog_by_age(engine=eng))
    st.subheader("Backlog by queue and age")
    if backlog.empty:
        st.text("Nothing is waiting for review.")
    else:
        st.bar_chart(backlog.pivot_table(index="queue", columns="age", values="items", fill_value=0))
    st.subheader("Decisions per day (last 30 days)")
    per_day = pd.DataFrame(metrics.decisions_per_day(engine=eng))
    if per_day.empty:
        st.text("No decisions yet.")
    else:
        st.bar_chart(per_day.pivot_table(index="day", columns="verdict", values="decisions", fill_value=0))
    st.subheader("Median time from ingest to decision (last 30 days)")
    ttd = metrics.median_time_to_decision(engine=eng)
    if not ttd:
        st.text("No decisions yet.")
    else:
        st.dataframe(
            pd.DataFrame([{"queue": q, "median minutes": round(s / 60, 1)} for q, s in ttd.items()]),
            hide_index=True,
        )
