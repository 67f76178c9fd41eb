"""Who is signed in to this browser, checked on every run.

The account comes from the session cookie (``sessions.py``; the sign-in page and the
cookie are ``routes.py``'s), read again on each run: a deactivated account is signed
out and a changed role applies at once, in every open tab; a reload, a new tab, a
bookmarked address or another review-app process find the same session. The resolved
account is kept in the session state for the pages of this run (``name()``, ``role()``).
"""

from __future__ import annotations

import streamlit as st

from reviewqueue import sessions
from reviewqueue.ui.common import engine
from reviewqueue.vocab import Role

_KEY = "user"


def token() -> str | None:
    try:
        value = st.context.cookies.get(sessions.COOKIE)
    except Exception:  # no browser (a script run outside a session)
        return None
    return value if isinstance(value, str) else None  # AppTest has no cookies, only stand-ins


def current() -> dict | None:
    """The signed-in account as of this run, or ``None``; a session that ended since the
    last run gives its item back first."""
    account = sessions.resume(token(), engine=engine())
    if account is None:
        if st.session_state.get(_KEY):
            _end()
        return None
    st.session_state[_KEY] = {"name": account.name, "role": account.role, "since": account.since}
    return st.session_state[_KEY]


def _end() -> None:
    from reviewqueue.ui import review_page

    review_page.leave()
    st.session_state.clear()


def why_signed_out() -> str:
    return sessions.why_not(token(), engine=engine())


def user() -> dict | None:
    return st.session_state.get(_KEY)


def name() -> str:
    return st.session_state[_KEY]["name"]


def role() -> Role:
    return Role(st.session_state[_KEY]["role"])


def at_least(wanted: Role) -> bool:
    u = user()
    return bool(u) and Role(u["role"]).at_least(wanted)
