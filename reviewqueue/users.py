"""Accounts: reviewers and admins, argon2 password hashes, sign-in with rate limiting."""

from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from . import clock, events, store
from .errors import AlreadyExists, AuthenticationFailed, NotFound, RateLimited, ValidationFailed
from .models import SignInAttempt, User
from .vocab import EventKind, Role

_hasher = PasswordHasher()
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
    if "active" in changes or "role" in changes:
        from . import tokens

        tokens.forget_recent()  # this process: at once; the others within tokens.RECENT_SECONDS
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


def authenticate(name: str, password: str, *, client: str | None = None, engine=None) -> User:
    """Return the active user, or raise ``AuthenticationFailed`` / ``RateLimited``.

    Failed attempts are kept in the database (every process sees them) and each is an
    event. Past a few failures, the next attempt must wait, doubling with each further
    failure up to the window (``REVIEWQUEUE_SIGNIN_WINDOW_SECONDS``): counted for the
    name from this client, for this client whatever the name (password spraying), and
    for the name from anywhere, with a larger allowance so that someone else's guesses
    slow the real user down late and briefly rather than lock them out.
    """
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    now = clock.now()
    try:
        _check_back_off(name, client, now, settings, engine)
    except RateLimited:
        with store.write(engine) as tx:  # refused unchecked: not a failure to count, but on record
            events.record(
                tx,
                EventKind.USER_SIGN_IN_FAILED,
                f"client:{client or 'unknown'}",
                after={"name": (name or "")[:128], "limited": True},
            )
        raise
    user = get(name, engine=engine) if name else None
    try:
        ok = _hasher.verify(
            user.password_hash if user and user.password_hash else _DUMMY_HASH, password or ""
        )
    except (VerificationError, InvalidHashError):
        ok = False
    ok = ok and user is not None and user.active and bool(user.password_hash)
    with store.write(engine) as tx:
        # Stamped inside the transaction, as every event is (the audit seal relies on it).
        tx.session.add(SignInAttempt(at=clock.now(), name=(name or "")[:128], client=client, ok=ok))
        if ok:
            events.record(tx, EventKind.USER_SIGNED_IN, user.name, after={"client": client})
        else:
            events.record(
                tx,
                EventKind.USER_SIGN_IN_FAILED,
                f"client:{client or 'unknown'}",
                after={"name": (name or "")[:128]},
            )
    if not ok:
        raise AuthenticationFailed("wrong username or password")
    return user


#: Failures allowed within the window before the back-off starts: for a name from one
#: client, for one client (any names), and for a name (any clients).
FREE_FAILURES = {"name_client": 5, "client": 20, "name": 20}


def _check_back_off(name: str, client: str | None, now, settings, engine) -> None:
    since = now - timedelta(seconds=settings.signin_window_seconds)
    a = SignInAttempt
    scopes = {
        "name_client": [a.name == name, a.client == client] if client else None,
        "client": [a.client == client] if client else None,
        "name": [a.name == name],
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
            wait = min(2**excess, settings.signin_window_seconds)
            left = wait - (now - clock.parse(latest)).total_seconds()
            if left > 0:
                raise RateLimited(f"too many failed sign-ins; try again in {int(left) + 1} seconds")


def reset_rate_limits() -> None:
    """Kept for tests: the counters live in the database, which each test makes afresh."""
