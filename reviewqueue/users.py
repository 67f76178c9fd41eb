"""Accounts: reviewers and admins, argon2 password hashes, sign-in with rate limiting."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from . import events, store
from .errors import AlreadyExists, AuthenticationFailed, NotFound, RateLimited, ValidationFailed
from .models import User
from .vocab import EventKind, Role

_hasher = PasswordHasher()
_failures: dict[str, deque] = defaultdict(deque)
_failures_lock = threading.Lock()
# Verified against when the user does not exist, so a wrong name costs as long as a
# wrong password and timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("reviewqueue-dummy-password")


def _check(name: str, role: str, password: str | None) -> None:
    errors = []
    if not name or len(name) > 128 or not name.strip() == name:
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
    _check(name, role, password)
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
    return user


def get(name: str, *, engine=None) -> User | None:
    with store.read(engine) as tx:
        return tx.session.get(User, name)


def by_email(email: str, *, engine=None) -> User | None:
    with store.read(engine) as tx:
        return tx.session.scalars(select(User).where(User.email == email, User.active.is_(True))).first()


def all_users(*, engine=None) -> list[User]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(User).order_by(User.name)))


def authenticate(name: str, password: str, *, engine=None) -> User:
    """Return the active user, or raise ``AuthenticationFailed`` / ``RateLimited``."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    key = (name or "").strip().lower()
    with _failures_lock:
        recent = _failures[key]
        cutoff = time.monotonic() - settings.signin_window_seconds
        while recent and recent[0] < cutoff:
            recent.popleft()
        if len(recent) >= settings.signin_attempts:
            wait = int(recent[0] - cutoff) + 1
            raise RateLimited(f"too many failed sign-ins for this user name; try again in {wait} seconds")
    user = get(name, engine=engine) if name else None
    try:
        ok = _hasher.verify(
            user.password_hash if user and user.password_hash else _DUMMY_HASH, password or ""
        )
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or not user.active or not user.password_hash:
        with _failures_lock:
            _failures[key].append(time.monotonic())
        raise AuthenticationFailed("wrong username or password")
    with _failures_lock:
        _failures.pop(key, None)
    return user


def reset_rate_limits() -> None:
    with _failures_lock:
        _failures.clear()
