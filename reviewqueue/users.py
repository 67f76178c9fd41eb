"""Accounts: reviewers and admins, argon2 password hashes, sign-in with rate limiting."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from functools import lru_cache
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from . import clock, events, store
from .errors import AlreadyExists, AuthenticationFailed, NotFound, RateLimited, ValidationFailed
from .models import SignInAttempt, User
from .vocab import EventKind, Role

_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a wrong name costs as long as
    a wrong password and timing does not reveal which names exist. Made on first use:
    hashing at import cost every command half a second."""
    return _hasher.hash("reviewqueue-dummy-password")


#: A user name: what a reviewer types to sign in and what the audit log names.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


def _check(name: str, role: str, password: str | None, *, new: bool = False) -> None:
    errors = []
    if new and not USER_NAME.fullmatch(name or ""):
        errors.append(
            {
                "loc": ["name"],
                "msg": "1-128 letters, digits, '_', '.', '@', '+' or '-', starting with a letter or digit "
                "(no spaces)",
                "type": "value_error",
            }
        )
    elif not name or len(name) > 128 or not name.strip() == name:
        errors.append(
            {"loc": ["name"], "msg": "1-128 characters, no leading or trailing spaces", "type": "value_error"}
        )
    if role not in set(Role):
        errors.append({"loc": ["role"], "msg": f"must be one of {', '.join(Role)}", "type": "value_error"})
    if password is not None and len(password) < 8:
        errors.append({"loc": ["password"], "msg": "at least 8 characters", "type": "value_error"})
    if errors:
        raise ValidationFailed.of(errors)


def add(
    name: str,
    *,
    role: str = Role.REVIEWER,
    password: str | None = None,
    email: str | None = None,
    actor: str = "system",
    engine=None,
) -> User:
    _check(name, role, password, new=True)
    with store.write(engine) as tx:
        if tx.session.get(User, name) is not None:
            raise AlreadyExists(f"user {name!r} already exists")
        user = User(
            name=name, role=role, email=email, password_hash=_hasher.hash(password) if password else None
        )
        tx.session.add(user)
        events.record(tx, EventKind.USER_CREATED, actor, after={"name": name, "role": role, "email": email})
    return user


def update(
    name: str,
    *,
    role: str | None = None,
    password: str | None = None,
    active: bool | None = None,
    email: str | None = None,
    actor: str = "system",
    engine=None,
) -> User:
    with store.write(engine) as tx:
        user = tx.session.get(User, name)
        if user is None:
            raise NotFound(f"user {name!r} does not exist")
        _check(name, role or user.role, password)
        changes = {}
        if role is not None and role != user.role:
            changes["role"], user.role = role, role
        if active is not None and active != user.active:
            changes["active"], user.active = active, active
        if email is not None and email != user.email:
            changes["email"], user.email = email, email
        if password is not None:
            user.password_hash = _hasher.hash(password)
            changes["password"] = "changed"
        if changes:
            events.record(tx, EventKind.USER_UPDATED, actor, after={"name": name, **changes})
    if "active" in changes or "role" in changes:
        from . import tokens

        tokens.forget_recent()  # this process: at once; the others within tokens.RECENT_SECONDS
    if changes.get("active") is False:
        from . import sessions

        sessions.end_all(name, engine=engine)  # signed out of the review app at once
    return user


def get(name: str, *, engine=None) -> User | None:
    with store.read(engine) as tx:
        return tx.session.get(User, name)


def by_email(email: str, *, engine=None) -> User | None:
    with store.read(engine) as tx:
        return tx.session.scalars(select(User).where(User.email == email, User.active.is_(True))).first()


def active_admins(*, engine=None) -> list[str]:
    with store.read(engine) as tx:
        return list(
            tx.session.scalars(select(User.name).where(User.role == Role.ADMIN, User.active.is_(True)))
        )


def all_users(*, engine=None) -> list[User]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(User).order_by(User.name)))


def authenticate(name: str, password: str, *, client: str | None = None, engine=None) -> User:
    """Return the active user, or raise ``AuthenticationFailed`` / ``RateLimited``.

    Attempts are kept in the database (every process sees them). Guessing is stopped
    without letting a third party lock the owner out (:func:`_throttle`):

    - per user name *from one client*: 5 failures in the window, then each further
      attempt must wait, doubling up to the window (``REVIEWQUEUE_SIGNIN_WINDOW_SECONDS``);
    - per client, whatever the names (password spraying): 20 failures, then the same;
    - per user name from anywhere: past 20 failures an attempt is only *slowed* (up to
      :data:`NAME_MAX_DELAY` seconds), never refused, and not at all from a client that
      signed in as that user within :data:`TRUSTED_DAYS` days.

    A refused attempt counts as a failure of the one who made it (hammering keeps a
    client out; it never frees the next slot), and the audit log records a refused
    burst once per client, name and window, not once per attempt.
    """
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    name = (name or "")[:128]
    verdict = _throttle(name, client, clock.now(), settings, engine)
    if verdict.wait is not None:
        with store.write(engine) as tx:
            now = clock.now()
            window_start = now - timedelta(seconds=settings.signin_window_seconds)
            first_refusal = not tx.execute(
                select(func.count()).where(
                    SignInAttempt.name == name,
                    SignInAttempt.client == client,
                    SignInAttempt.limited.is_(True),
                    SignInAttempt.at >= window_start,
                )
            ).scalar()
            tx.session.add(SignInAttempt(at=now, name=name, client=client, ok=False, limited=True))
            if first_refusal:
                events.record(
                    tx,
                    EventKind.USER_SIGN_IN_FAILED,
                    f"client:{client or 'unknown'}",
                    after={"name": name, "limited": True},
                )
        raise RateLimited(f"too many failed sign-ins; try again in {int(verdict.wait) + 1} seconds")
    if verdict.delay:
        time.sleep(verdict.delay)
    user = get(name, engine=engine) if name else None
    try:
        ok = _hasher.verify(
            user.password_hash if user and user.password_hash else _dummy_hash(), password or ""
        )
    except (VerificationError, InvalidHashError):
        ok = False
    ok = ok and user is not None and user.active and bool(user.password_hash)
    with store.write(engine) as tx:
        # Stamped inside the transaction, as every event is (the audit seal relies on it).
        tx.session.add(SignInAttempt(at=clock.now(), name=name, client=client, ok=ok))
        if ok:
            events.record(tx, EventKind.USER_SIGNED_IN, user.name, after={"client": client})
        else:
            events.record(
                tx,
                EventKind.USER_SIGN_IN_FAILED,
                f"client:{client or 'unknown'}",
                after={"name": name},
            )
    if not ok:
        raise AuthenticationFailed("wrong username or password")
    return user


#: Failures allowed within the window before attempts are refused: for a name from one
#: client, and for one client whatever the names.
FREE_FAILURES = {"name_client": 5, "client": 20}
#: Failures of one name from anywhere before its attempts are slowed (never refused).
NAME_SLOW_AFTER = 20
#: The longest a slowed attempt waits, in seconds.
NAME_MAX_DELAY = 3.0
#: A client that signed in as a user this recently is not slowed by others' guesses.
TRUSTED_DAYS = 30


class _Verdict(NamedTuple):
    wait: float | None  # seconds until this client may try again (refused), or None
    delay: float  # seconds to slow this attempt by


def _throttle(name: str, client: str | None, now, settings, engine) -> _Verdict:
    window = settings.signin_window_seconds
    since = now - timedelta(seconds=window)
    a = SignInAttempt
    scopes = {
        "name_client": [a.name == name, a.client == client]
        if client
        else [a.name == name, a.client.is_(None)],
        "client": [a.client == client] if client else None,
    }
    with store.read(engine) as tx:
        for scope, where in scopes.items():
            if where is None:
                continue
            last_ok = tx.execute(select(func.max(a.at)).where(*where, a.ok.is_(True), a.at >= since)).scalar()
            start = max(since, clock.parse(last_ok)) if last_ok else since
            failures, latest = tx.execute(
                select(func.count(), func.max(a.at)).where(*where, a.ok.is_(False), a.at >= start)
            ).one()
            excess = failures - FREE_FAILURES[scope]
            if excess < 0:
                continue
            left = min(2**excess, window) - (now - clock.parse(latest)).total_seconds()
            if left > 0:
                return _Verdict(left, 0.0)
        trusted = (
            client is not None
            and tx.execute(
                select(func.count()).where(
                    a.name == name,
                    a.client == client,
                    a.ok.is_(True),
                    a.at >= now - timedelta(days=TRUSTED_DAYS),
                )
            ).scalar()
        )
        if trusted:
            return _Verdict(None, 0.0)
        failures = tx.execute(
            select(func.count()).where(a.name == name, a.ok.is_(False), a.limited.is_(False), a.at >= since)
        ).scalar()
    if failures <= NAME_SLOW_AFTER:
        return _Verdict(None, 0.0)
    return _Verdict(None, min(NAME_MAX_DELAY, 0.5 * (1 + (failures - NAME_SLOW_AFTER) / NAME_SLOW_AFTER)))


def reset_rate_limits() -> None:
    """Kept for tests: the counters live in the database, which each test makes afresh."""
