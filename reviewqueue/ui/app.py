"""The review app (Streamlit). Started by ``streamlit run review_app.py``,
``reviewqueue ui`` or ``reviewqueue up``. Page code calls the domain modules only.

Navigation is Streamlit's own (``st.navigation``): every page has its URL
(``/review``, ``/browse``, ...), and the pages offered depend on the signed-in role,
checked again on every run (``session.py``).
"""

import pandas as pd
import streamlit as st

from reviewqueue import netaddr, policies, users
from reviewqueue.errors import ReviewQueueError
from reviewqueue.settings import get_settings
from reviewqueue.ui import (
    adjudicate_page,
    admin_page,
    audit_page,
    browse_page,
    dashboard_page,
    exports_page,
    quality_page,
    review_page,
    reviewers_page,
    session,
)
from reviewqueue.ui.common import engine
from reviewqueue.vocab import Role


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        return False


def sign_in_page() -> None:
    st.title("reviewqueue")
    st.subheader("Sign in")
    reason = st.session_state.pop("rq_signed_out", None)
    if reason:
        st.info(reason)
    with st.form("sign-in"):
        name = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            u = users.authenticate(name.strip(), password, engine=engine(), client=_client_address())
        except ReviewQueueError as exc:
            st.error(str(exc))
        else:
            session.sign_in(u.name, u.role)
            st.rerun()
    if _sso_configured():
        st.divider()
        if st.session_state.get("sso_refused"):
            # A constant message: the identity provider's data is not rendered as markdown.
            st.error("Your single sign-on account has no reviewqueue user; ask an admin to add your e-mail.")
            if st.button("Use another single sign-on account"):
                st.session_state.sso_refused = False
                st.logout()
        elif st.button("Sign in with single sign-on"):
            st.login()


def _client_address() -> str | None:
    """The reviewer's address for the sign-in limits: the peer, or what a trusted proxy
    says (``netaddr.client_address``, ``REVIEWQUEUE_TRUSTED_PROXIES``)."""
    try:
        peer = st.context.ip_address  # None when the peer is this machine
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # not known
        return None
    if peer is None:
        peer = "127.0.0.1"
    if not isinstance(peer, str):  # a stand-in object under AppTest
        return None
    return netaddr.client_address(peer, forwarded, get_settings().trusted_proxies)


def _sso_user() -> None:
    """Map a signed-in OIDC identity to an active account by e-mail."""
    if session.user() or not _sso_configured() or not getattr(st.user, "is_logged_in", False):
        return
    u = users.by_email(st.user.get("email", ""), engine=engine())
    if u is None:
        st.session_state.sso_refused = True
        return
    session.sign_in(u.name, u.role)


def _sign_out() -> None:
    review_page.leave()
    session.sign_out()
    if _sso_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


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
    _sso_user()
    me = session.current()
    if not me:
        st.navigation([st.Page(sign_in_page, title="Sign in", url_path="sign-in")], position="hidden").run()
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
        st.button("Sign out", on_click=_sign_out)
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
