"""Dashboard: backlog by queue and age, decisions per day, time to decision."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from reviewqueue import clock, metrics, queues
from reviewqueue.ui.common import engine


def render() -> None:
    st.header("Dashboard")
    eng = engine()
    backlog = pd.DataFrame(metrics.backlog_by_age(engine=eng))
    st.subheader("Backlog by queue and age")
    if backlog.empty:
        st.text("Nothing is waiting for review.")
    else:
        st.altair_chart(_backlog_chart(backlog), width="stretch")
        table = backlog.pivot_table(index="queue", columns="age", values="items", fill_value=0)
        ages = [label for label, _ in queues.AGE_BUCKETS]
        st.dataframe(table.reindex(columns=[a for a in ages if a in table.columns]), width="content")
    st.subheader("Decisions per day (last 30 days)")
    per_day = pd.DataFrame(metrics.decisions_per_day(engine=eng))
    if per_day.empty:
        st.text("No decisions yet.")
    else:
        st.bar_chart(per_day.pivot_table(index="day", columns="verdict", values="decisions", fill_value=0))
    _deadlines(eng)
    st.subheader("Median time from ingest to decision (last 30 days)")
    ttd = metrics.median_time_to_decision(engine=eng)
    if not ttd:
        st.text("No decisions yet.")
    else:
        st.dataframe(
            pd.DataFrame([{"queue": q, "median minutes": round(s / 60, 1)} for q, s in ttd.items()]),
            hide_index=True,
        )


def _deadlines(eng) -> None:
    """Deadlines that passed with no reviewer (the fallback answered, not a person), and
    what is due soon: shown only once a queue uses deadlines."""
    week = metrics.deadline_fallbacks(since=clock.now() - timedelta(days=7), engine=eng)
    soon = {q: n for q, n in metrics.due_soon(engine=eng).items() if n}
    if not week and not soon:
        return
    st.subheader("Deadlines (last 7 days)")
    names = sorted({q for q, _ in week} | set(soon))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "queue": q,
                    "due soon": soon.get(q, 0),
                    **{
                        f"fallback: {a}": week.get((q, a), 0)
                        for a in ("accept", "reject", "escalate", "keep")
                    },
                }
                for q in names
            ]
        ),
        hide_index=True,
    )


def _backlog_chart(backlog: pd.DataFrame) -> alt.Chart:
    """One bar per queue, split by how long its items have waited, youngest to oldest
    (the oldest in the darkest colour: the part that needs attention)."""
    ages = [label for label, _ in queues.AGE_BUCKETS]
    return (
        alt.Chart(backlog)
        .mark_bar()
        .encode(
            y=alt.Y("queue:N", title=None, axis=alt.Axis(labelLimit=240)),
            x=alt.X("sum(items):Q", title="waiting items"),
            color=alt.Color(
                "age:N",
                sort=ages,
                scale=alt.Scale(domain=ages, scheme="oranges"),
                legend=alt.Legend(title="waiting", orient="bottom"),
            ),
            order=alt.Order("age_rank:Q"),
            tooltip=["queue", "age", "items"],
        )
        .transform_calculate(age_rank=f"indexof({ages!r}, datum.age)")
        .properties(height=60 + 32 * backlog["queue"].nunique())
    )
