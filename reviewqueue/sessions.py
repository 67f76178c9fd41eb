"""Review-app sessions: who is signed in, kept in the database and named by a cookie.

A reviewer signs in once (``ui/server.py``'s sign-in page): a session row is made here and
its token goes to the browser in an ``HttpOnly`` cookie (``SameSite=Lax``, ``Secure``
over https). Every page load and every run of the app's script finds the account
through it (:func:`resume`), so a reload, a second tab, a bookmarked address or another
review-app process behind the balancer keep the reviewer signed in. Only a SHA-256 of the
token is stored; the token is never in a URL.

A session ends after ``REVIEWQUEUE_UI_IDLE_MINUTES`` without use, after
``REVIEWQUEUE_UI_SESSION_HOURS`` whatever happens, when its user signs out, and at once
when the account is deactivated.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from . import clock, events, store
from .models import UiSession, User
from .vocab import EventKind

#: The cookie that names a session.
COOKIE = "rq_session"
#: ``last_seen_at`` is written at most this often (each run of the app reads the session).
TOUCH_SECONDS = 60


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Account:
    """The signed-in user, as of this moment."""

    name: str
    role: str
    since: float  # epoch seconds of the sign-in
    token_hash: str


def start(user: str, *, client: str | None = None, engine=None) -> str:
    """A new session for ``user`` (already authenticated); returns its token."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    with store.write(engine) as tx:
        tx.session.add(
            UiSession(
                id_hash=_hash(token), user=user, created_at=now, last_seen_at=now, client=(client or "")[:64]
            )
        )
    return token


def start_sso(email: str, *, client: str | None = None, engine=None) -> str | None:
    """A session for the active user with this e-mail, after single sign-on proved the
    e-mail; ``None`` when no active user has it. The sign-in is in the audit log, as a
    password sign-in is (``users.authenticate``)."""
    token = secrets.token_urlsafe(32)
    with store.write(engine) as tx:
        user = (
            tx.session.execute(select(User).where(User.email == email, User.active.is_(True)))
            .scalars()
            .first()
        )
        if user is None:
            return None
        now = clock.now()
        tx.session.add(
            UiSession(
                id_hash=_hash(token),
                user=user.name,
                created_at=now,
                last_seen_at=now,
                client=(client or "")[:64],
            )
        )
        events.record(tx, EventKind.USER_SIGNED_IN, user.name, after={"client": client, "via": "sso"})
    return token


def resume(token: str | None, *, engine=None) -> Account | None:
    """The account of a live session, or ``None`` (ended, timed out, unknown, or its
    user deactivated): what every page load and every run of the app asks."""
    if not token or len(token) > 256:
        return None
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    now = clock.now()
    with store.read(engine) as tx:
        row = tx.session.execute(
            select(UiSession, User.role, User.active)
            .join(User, User.name == UiSession.user)
            .where(UiSession.id_hash == _hash(token))
        ).first()
    if row is None:
        return None
    session, role, active = row
    created, seen = clock.parse(session.created_at), clock.parse(session.last_seen_at)
    if (
        session.ended_at is not None
        or not active
        or now - seen > timedelta(minutes=settings.ui_idle_minutes)
        or now - created > timedelta(hours=settings.ui_session_hours)
    ):
        return None
    if (now - seen).total_seconds() > TOUCH_SECONDS:
        with store.write(engine) as tx:
            tx.execute(update(UiSession).where(UiSession.id_hash == session.id_hash).values(last_seen_at=now))
    return Account(session.user, role, created.timestamp(), session.id_hash)


def why_not(token: str | None, *, engine=None) -> str:
    """Why a token names no live session, in the words the sign-in page shows."""
    if not token:
        return ""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    with store.read(engine) as tx:
        row = tx.session.execute(
            select(UiSession, User.active)
            .join(User, User.name == UiSession.user)
            .where(UiSession.id_hash == _hash(token))
        ).first()
    if row is None:
        return ""
    session, active = row
    now = clock.now()
    if not active:
        return "Your account is not active any more."
    if session.ended_at is not None:
        return "You signed out."
    if now - clock.parse(session.created_at) > timedelta(hours=settings.ui_session_hours):
        return "Your session reached its maximum length; please sign in again."
    return "Your session ended after a period of inactivity; please sign in again."


def end(token: str | None, *, engine=None) -> str | None:
    """End the session (signing out); returns its user, if there was one."""
    if not token:
        return None
    with store.write(engine) as tx:
        session = tx.session.get(UiSession, _hash(token))
        if session is None or session.ended_at is not None:
            return None
        session.ended_at = clock.now()
        events.record(tx, EventKind.USER_SIGNED_OUT, session.user)
        return session.user


def end_all(user: str, *, engine=None) -> int:
    """End every session of ``user`` (deactivation); returns how many."""
    with store.write(engine) as tx:
        return tx.execute(
            update(UiSession)
            .where(UiSession.user == user, UiSession.ended_at.is_(None))
            .values(ended_at=clock.now())
        ).rowcount
