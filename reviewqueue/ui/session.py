"""Who is signed in to this browser session, checked on every run.

The account is read again on each run: a deactivated account is signed out and a
changed role applies at once, in every open session. A session also ends after
``REVIEWQUEUE_UI_IDLE_MINUTES`` without a run and ``REVIEWQUEUE_UI_SESSION_HOURS`` after
sign-in, whatever happens.
"""

from __future__ import annotations

import time

import streamlit as st

from reviewqueue import store, users
from reviewqueue.ui.common import engine
from reviewqueue.vocab import Role

_KEY = "user"


def sign_in(name: str, role: str) -> None:
    now = time.time()
    st.session_state[_KEY] = {"name": name, "role": role, "since": now, "seen": now}


def sign_out(reason: str | None = None) -> None:
    """Forget the session (the review page gives its item back first, see review_page.leave)."""
    keep = {"rq_signed_out": reason} if reason else {}
    st.session_state.clear()
    st.session_state.update(keep)


def current() -> dict | None:
    """The signed-in account as of this run, or ``None`` (signing out a session that ran
    out or whose account was deactivated)."""
    session = st.session_state.get(_KEY)
    if not session:
        return None
    settings = store.settings_of(engine())
    now = time.time()
    if now - session["seen"] > settings.ui_idle_minutes * 60:
        return _end("Your session ended after a period of inactivity; please sign in again.")
    if now - session["since"] > settings.ui_session_hours * 3600:
        return _end("Your session reached its maximum length; please sign in again.")
    account = users.get(session["name"], engine=engine())
    if account is None or not account.active:
        return _end("Your account is not active any more.")
    session["role"] = account.role
    session["seen"] = now
    return session


def _end(reason: str) -> None:
    from reviewqueue.ui import review_page

    review_page.leave()
    sign_out(reason)
    return None


def user() -> dict | None:
    return st.session_state.get(_KEY)


def name() -> str:
    return st.session_state[_KEY]["name"]


def role() -> Role:
    return Role(st.session_state[_KEY]["role"])


def at_least(wanted: Role) -> bool:
    u = user()
    return bool(u) and Role(u["role"]).at_least(wanted)
