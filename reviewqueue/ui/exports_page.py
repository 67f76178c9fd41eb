"""Exports: run one, list past ones, download."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from reviewqueue import export, queues
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui.common import engine, user
from reviewqueue.vocab import Verdict


def render() -> None:
    st.header("Exports")
    eng = engine()
    with st.form("export"):
        c1, c2, c3 = st.columns(3)
        fmt = c1.selectbox("Format", list(export.FORMATS))
        qs = c2.multiselect("Queues (default: all)", queues.names(engine=eng))
        week = c3.text_input("ISO week (e.g. 2026-W47; empty: since the last export)")
        verdicts = st.multiselect("Verdicts (default: all)", list(Verdict))
        run = st.form_submit_button("Run export", type="primary")
    if run:
        try:
            results = export.export(
                fmt=fmt,
                queues=qs or None,
                week_spec=week.strip() or None,
                verdicts=verdicts or None,
                actor=user()["name"],
                engine=eng,
            )
        except ReviewQueueError as exc:
            st.error(str(exc))
        else:
            for r in results:
                st.success(f"{r.queue}: {r.rows} rows written")
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
                    "since": r.since,
                    "until": r.until,
                    "rows": r.rows,
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
        st.download_button(
            "Download file",
            Path(pick.path).read_bytes(),
            file_name=f"{pick.queue}-{Path(pick.path).parent.name}-{Path(pick.path).name}",
        )
