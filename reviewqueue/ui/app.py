"""The review app (Streamlit). Started by ``streamlit run review_app.py``,
``reviewqueue ui`` or ``reviewqueue up``. Page code calls the domain modules only.

Navigation is Streamlit's own (``st.navigation``): every page has its URL
(``/review``, ``/browse``, ...), and the pages offered depend on the signed-in role,
checked again on every run (``session.py``).
"""

import json

import pandas as pd
import streamlit as st

from reviewqueue import policies
from reviewqueue.ui import (
    adjudicate_page,
    admin_page,
    audit_page,
    browse_page,
    dashboard_page,
    exports_page,
    keys,
    quality_page,
    review_page,
    reviewers_page,
    session,
)
from reviewqueue.ui.common import engine
from reviewqueue.vocab import Role


def signed_out_page() -> None:
    """A session that ended while the page was open (its cookie names none any more):
    off to the sign-in page, which brings the reviewer back here."""
    from urllib.parse import quote, urlsplit

    st.title("reviewqueue")
    st.info(session.why_signed_out() or "You are signed out.")
    url = urlsplit(st.context.url or "/")
    target = "/rq/sign-in?next=" + quote(url.path + (f"?{url.query}" if url.query else ""), safe="")
    # Our own fixed script and link; the only data in it is this page's own path, quoted.
    st.html(f'<a href="{target}">Sign in again</a>')
    st.html(f"<script>window.location.assign({json.dumps(target)});</script>", unsafe_allow_javascript=True)


@st.cache_resource
def _freeze_start_up_heap() -> bool:
    """Once per server process, after the first run imported everything: move the heap out
    of the garbage collector's sight. Its full collections walked every module, pandas
    and Streamlit object alive and stalled a reviewer's decision by ~100 ms every few
    runs (the same pause the API froze away)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    return True


def main() -> None:
    st.set_page_config(page_title="reviewqueue", layout="wide")
    _freeze_start_up_heap()
    keys.install()  # first on the page: active before any shortcut button is
    # Streamlit's default top margin (6rem) pushes the item below the fold at 1366x768.
    st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }</style>")
    me = session.current()
    if not me:
        st.navigation(
            [st.Page(signed_out_page, title="Signed out", url_path="signed-out")], position="hidden"
        ).run()
        return
    role = Role(me["role"])
    pages = [
        st.Page(review_page.render, title="Review", url_path="review", default=True),
        st.Page(browse_page.render, title="Browse", url_path="browse"),
        st.Page(dashboard_page.render, title="Dashboard", url_path="dashboard"),
        st.Page(quality_page.render, title="Quality", url_path="quality"),
    ]
    if role.at_least(Role.LEAD):
        pages.append(st.Page(adjudicate_page.render, title="Adjudicate", url_path="adjudicate"))
        pages.append(st.Page(reviewers_page.render, title="Reviewers", url_path="reviewers"))
    if policies.may_export(role, feed=False, engine=engine()):
        pages.append(st.Page(exports_page.render, title="Exports", url_path="exports"))
    if role == Role.ADMIN:
        pages.append(st.Page(admin_page.render, title="Admin", url_path="admin"))
        pages.append(st.Page(audit_page.render, title="Audit", url_path="audit"))
    page = st.navigation(pages)
    with st.sidebar:
        st.text(f"Signed in as {me['name']} ({role})")
        # A plain link: the route ends the session, gives the held items back and
        # clears the cookie, in this tab.
        st.html('<a href="/rq/sign-out" data-testid="rq-sign-out">Sign out</a>')
    page.run()
    _load_page_scripts_ahead()


def _load_page_scripts_ahead() -> None:
    """Once per browser session, after the first page is on screen: hidden elements of
    the kinds Browse and the Dashboard show, so the browser loads and compiles their
    scripts (the data grid, the chart library, the date and slider inputs: ~2.5 MB)
    while the reviewer reads, not when they first open those pages. Measured in
    Chromium: a first visit of Browse took ~1 s, of which ~0.6 s was loading them."""
    ss = st.session_state
    if ss.get("rq_scripts_loaded"):
        return
    ss.rq_scripts_loaded = True
    st.html("<style>.st-key-rq_preload { display: none; }</style>")
    with st.container(key="rq_preload"):
        st.dataframe(pd.DataFrame({"x": [1]}), hide_index=True)
        st.bar_chart(pd.DataFrame({"x": [1]}))
        with st.form("rq_preload_form"):
            st.multiselect("preload", ["x"], key="rq_preload_pick")
            st.slider("preload", 0.0, 1.0, (0.0, 1.0), key="rq_preload_range")
            st.date_input("preload", value=(), key="rq_preload_dates")
            st.number_input("preload", 1, 2, 1, key="rq_preload_number")
            st.form_submit_button("preload")


main()
