"""The reviewer web app (Streamlit). Started by ``streamlit run review_app.py``,
``reviewqueue ui`` or ``reviewqueue up``. Page code calls the domain modules only."""

import streamlit as st

from reviewqueue import users
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui import admin_page, browse_page, dashboard_page, exports_page, review_page
from reviewqueue.ui.common import engine, is_admin, user

PAGES = {
    "Review": review_page.render,
    "Browse": browse_page.render,
    "Dashboard": dashboard_page.render,
    "Exports": exports_page.render,
}


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        return False


def sign_in() -> None:
    st.title("reviewqueue")
    st.subheader("Sign in")
    with st.form("sign-in"):
        name = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            u = users.authenticate(name.strip(), password, engine=engine())
        except ReviewQueueError as exc:
            st.error(str(exc))
        else:
            st.session_state.user = {"name": u.name, "role": u.role}
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


def _sso_user() -> None:
    """Map a signed-in OIDC identity to an active account by e-mail."""
    if user() or not _sso_configured() or not getattr(st.user, "is_logged_in", False):
        return
    u = users.by_email(st.user.get("email", ""), engine=engine())
    if u is None:
        st.session_state.sso_refused = True
        return
    st.session_state.user = {"name": u.name, "role": u.role}


def main() -> None:
    st.set_page_config(page_title="reviewqueue", layout="wide")
    _sso_user()
    if not user():
        sign_in()
        return
    pages = dict(PAGES)
    if is_admin():
        pages["Admin"] = admin_page.render
    with st.sidebar:
        st.text(f"Signed in as {user()['name']} ({user()['role']})")
        page = st.radio("Page", list(pages), key="page")
        if st.button("Sign out"):
            review_page.leave()
            st.session_state.clear()
            if _sso_configured() and getattr(st.user, "is_logged_in", False):
                st.logout()
            st.rerun()
    pages[page]()


main()
