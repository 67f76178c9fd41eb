"""The reviewer web app (Streamlit). Started by ``streamlit run review_app.py``,
``reviewqueue ui`` or ``reviewqueue up``. Page code calls the domain modules only."""

import streamlit as st

from reviewqueue import db, queues


@st.cache_resource
def engine(url: str):
    e = db.get_engine(url)
    db.upgrade(e)
    return e


def main() -> None:
    from reviewqueue.settings import get_settings

    st.set_page_config(page_title="reviewqueue", layout="wide")
    eng = engine(get_settings().database_url)
    st.title("reviewqueue")
    rows = queues.overview(engine=eng)
    if not rows:
        st.info("No queues yet. Create one with: reviewqueue queue create NAME")
        return
    st.dataframe(
        [{"queue": q.name, "pending": q.counts.get("pending", 0), "in review": q.counts.get("in_review", 0),
          "threshold": q.threshold, "audit rate": q.audit_rate} for q in rows],
        hide_index=True,
    )


main()
