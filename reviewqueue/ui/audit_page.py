"""Audit (admins): every change, who made it and when; filter, download as CSV, and
verify that nobody edited the log."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from reviewqueue import audit, events, queues
from reviewqueue.ui import session
from reviewqueue.ui.common import engine, plain
from reviewqueue.vocab import EventKind, Role

SHOWN = 500


def render() -> None:
    if not session.at_least(Role.ADMIN):
        st.error("Admins only.")
        return
    st.header("Audit")
    eng = engine()
    with st.form("audit-filters", enter_to_submit=True):
        c1, c2, c3, c4 = st.columns(4)
        actor = c1.text_input("Actor")
        kind = c2.selectbox("Kind", [""] + [str(k) for k in EventKind])
        queue = c3.selectbox("Queue", [""] + queues.names(engine=eng))
        dates = c4.date_input("Between (UTC)", value=(), format="YYYY-MM-DD")
        st.form_submit_button("Apply filters")
    flt = audit.EventFilter(
        actor=actor.strip() or None,
        kind=kind or None,
        queue=queue or None,
        since=datetime.combine(dates[0], time.min, tzinfo=UTC) if len(dates) >= 1 else None,
        until=datetime.combine(dates[1], time.max, tzinfo=UTC) if len(dates) == 2 else None,
    )
    rows = audit.events(flt, limit=10_000, engine=eng)
    st.caption(
        f"{len(rows):,} event(s)"
        + (" (the first 10,000; narrow the filters)" if len(rows) == 10_000 else "")
        + f"; the newest {min(SHOWN, len(rows))} shown, all of them in the download."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "at": e.at,
                    "actor": plain(e.actor),
                    "kind": e.kind,
                    "queue": e.queue or "",
                    "item": e.item_id or "",
                    "what": plain(events.describe(e)),
                }
                for e in reversed(rows[-SHOWN:])
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.download_button(
        "Download as CSV", audit.as_csv(rows), file_name="reviewqueue-audit.csv", mime="text/csv"
    )
    if st.button("Verify the audit log"):
        result = audit.verify(engine=eng)
        if result.ok:
            st.success(
                f"Verified: {result.events:,} event(s) in {result.seals} seal(s); head {result.head}. "
                f"{result.unsealed} event(s) since the last seal."
            )
        else:
            st.error(f"Verification failed: {result.problem}")
