"""Exports: run one, list past ones, download.

Who may do what is an admin's decision (``policies.export_roles``): the roles listed
there may run week or range exports, which never move a feed's watermark; only admins
run the incremental feeds that the weekly datasets come from.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pandas as pd
import streamlit as st

from reviewqueue import export, policies, queues
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui import session
from reviewqueue.ui.common import engine
from reviewqueue.vocab import Role, Verdict


def render() -> None:
    st.header("Exports")
    eng = engine()
    role = session.role()
    try:
        policies.require_export(role, feed=False, engine=eng)
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    kinds = ["A week", "A date range"] + (["Continue a feed (incremental)"] if role == Role.ADMIN else [])
    with st.form("export", enter_to_submit=False):
        c1, c2, c3 = st.columns(3)
        fmt = c1.selectbox("Format", list(export.FORMATS))
        qs = c2.multiselect("Queues (default: all)", queues.names(engine=eng))
        verdicts = c3.multiselect("Verdicts (default: all)", list(Verdict))
        kind = st.radio("What", kinds, horizontal=True)
        c4, c5, c6 = st.columns(3)
        week = c4.text_input("ISO week (for a week)", placeholder="2026-W47")
        dates = c5.date_input("From - to (for a date range, UTC)", value=(), format="YYYY-MM-DD")
        feed = c6.text_input("Feed name (for a feed; empty: this folder's default feed)")
        run = st.form_submit_button("Run export", type="primary")
    if run:
        _run(fmt, qs, verdicts, kind, week.strip(), dates, feed.strip())
    st.subheader("Past exports")
    runs = export.runs(engine=eng)
    if not runs:
        st.text("No exports yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": r.id,
                    "queue": r.queue,
                    "format": r.format,
                    "mode": r.mode,
                    "feed": r.feed or "",
                    "since": r.since,
                    "until": r.until,
                    "rows": r.rows,
                    "by": r.created_by,
                    "file": r.path,
                }
                for r in runs
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    available = [r for r in runs if Path(r.path).exists()]
    if available:
        pick = st.selectbox(
            "Download",
            available,
            format_func=lambda r: f"#{r.id} {r.queue} {Path(r.path).parent.name} {r.format}",
        )
        # A link to the download route, not the file in the page: the route reads it when
        # it is asked for, from whichever review-app process the balancer picks, and checks
        # the export policy again (routes.py).
        st.link_button("Download file", f"/rq/exports/{int(pick.id)}")


def _run(fmt, qs, verdicts, kind, week, dates, feed) -> None:
    eng = engine()
    options = {
        "fmt": fmt,
        "queues": qs or None,
        "verdicts": verdicts or None,
        "actor": session.name(),
        "engine": eng,
    }
    try:
        if kind == "A week":
            if not week:
                st.error("Give the ISO week to export, e.g. 2026-W47.")
                return
            results = export.export(week_spec=week, **options)
        elif kind == "A date range":
            if len(dates) != 2:
                st.error("Pick the first and the last day of the range.")
                return
            results = export.export(
                since=datetime.combine(dates[0], time.min, tzinfo=UTC),
                until=datetime.combine(dates[1], time.max, tzinfo=UTC),
                **options,
            )
        else:
            policies.require_export(session.role(), feed=True, engine=eng)
            results = export.export(feed=feed or None, **options)
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    for r in results:
        st.success(f"{r.queue}: {r.rows} rows written to {r.path}")
