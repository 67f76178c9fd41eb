"""API tokens: created once (shown once), stored as a SHA-256 hash, scoped, revocable.

Scopes: ``ingest`` (post items, read them back), ``read`` (read items and queues),
``review`` (claim and decide, acting as the token's user), ``admin`` (everything).
A token may be limited to a list of queues.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, select, update

from . import clock, events, store
from .errors import (
    AlreadyExists,
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    QueueNotFound,
    ValidationFailed,
)
from .models import ApiToken, Queue, User
from .vocab import EventKind, Role, Scope

#: Which scopes may do what. ``admin`` may do everything.
ABILITIES = {
    Scope.INGEST: {Scope.INGEST, Scope.READ},
    Scope.READ: {Scope.READ},
    Scope.REVIEW: {Scope.REVIEW, Scope.READ},
    Scope.ADMIN: set(Scope),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, scope, queue list, and the user it acts as
    (with that user's role as of this request)."""

    token: str
    scope: str
    queues: tuple[str, ...]
    user: str | None
    role: str | None = None

    @property
    def actor(self) -> str:
        """The name decisions are recorded under: the token's user, or the token."""
        return self.user or f"token:{self.token}"

    @property
    def audit_actor(self) -> str:
        """Who did it, for the audit log: the user and the token they used."""
        return f"{self.user} (token:{self.token})" if self.user else f"token:{self.token}"

    def can(self, ability: str) -> bool:
        """A token may do what its scope allows, and never more than its user's role: an
        admin token of a user demoted to reviewer administers nothing."""
        if ability not in ABILITIES[self.scope]:
            return False
        return not (ability == Scope.ADMIN and self.user is not None and self.role != Role.ADMIN)

    def require(self, ability: str) -> None:
        if not self.can(ability):
            if ability in ABILITIES[self.scope]:
                raise PermissionDenied(
                    f"token {self.token!r} acts as {self.user}, whose role ({self.role}) cannot {ability}"
                )
            raise PermissionDenied(f"token {self.token!r} has scope {self.scope!r}, which cannot {ability}")

    def require_role(self, role: Role) -> None:
        """The token acts as a user of at least ``role`` (leads settle disputes)."""
        if self.user is None or self.role is None or not Role(self.role).at_least(role):
            raise PermissionDenied(f"token {self.token!r} must act as a user who is at least {role}")

    def allowed_queues(self) -> list[str] | None:
        """The queues this token is limited to, or None for all."""
        return list(self.queues) if self.queues else None

    def require_queue(self, queue: str) -> None:
        if self.queues and queue not in self.queues:
            raise PermissionDenied(
                f"token {self.token!r} may not use queue {queue!r} (allowed: {', '.join(self.queues)})"
            )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    name: str,
    scope: str,
    *,
    queues: list[str] | None = None,
    user: str | None = None,
    expires_in: timedelta | None = None,
    actor: str = "system",
    engine=None,
) -> tuple[ApiToken, str]:
    """Create a token; returns ``(record, plaintext)``. The plaintext is not stored."""
    errors = []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}", name or ""):
        errors.append(
            {"loc": ["name"], "msg": "1-128 letters, digits, '_', '.', ':' or '-'", "type": "value_error"}
        )
    if scope not in set(Scope):
        errors.append({"loc": ["scope"], "msg": f"must be one of {', '.join(Scope)}", "type": "value_error"})
    if scope == Scope.REVIEW and not user:
        errors.append(
            {"loc": ["user"], "msg": "a review token acts as a user: name the user", "type": "value_error"}
        )
    if errors:
        raise ValidationFailed.of(errors)
    plaintext = "rq_" + secrets.token_urlsafe(32)
    with store.write(engine) as tx:
        session = tx.session
        if session.scalars(select(ApiToken).where(ApiToken.name == name)).first():
            raise AlreadyExists(f"a token named {name!r} exists; revoke it or pick another name")
        for q in queues or []:
            if session.get(Queue, q) is None:
                raise QueueNotFound(q)
        if user and session.get(User, user) is None:
            raise NotFound(f"user {user!r} does not exist")
        record = ApiToken(
            name=name,
            scope=scope,
            queues=list(queues or []),
            user=user,
            token_hash=_hash(plaintext),
            prefix=plaintext[:10],
            expires_at=clock.now() + expires_in if expires_in else None,
        )
        session.add(record)
        events.record(
            tx,
            EventKind.TOKEN_CREATED,
            actor,
            after={
                "name": name,
                "scope": scope,
                "queues": queues or [],
                "user": user,
                "expires_at": clock.iso(record.expires_at),
            },
        )
    return record, plaintext


def rotate(
    name: str,
    scope: str,
    *,
    queues: list[str] | None = None,
    user: str | None = None,
    actor: str = "system",
    engine=None,
) -> tuple[ApiToken, str]:
    """Revoke the token called ``name`` (kept, renamed ``name@revoked-<time>``) and
    create a new one with that name."""
    with store.write(engine) as tx:
        old = tx.session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
        if old is not None:
            now = clock.now()
            old.revoked_at = old.revoked_at or now
            old.name = f"{name}@revoked-{now.strftime('%Y%m%dT%H%M%S%f')}"
            events.record(tx, EventKind.TOKEN_REVOKED, actor, after={"name": name, "renamed": old.name})
    forget_recent()
    return create(name, scope, queues=queues, user=user, actor=actor, engine=engine)


def all_tokens(*, engine=None) -> list[ApiToken]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke(name: str, *, actor: str = "system", engine=None) -> ApiToken:
    with store.write(engine) as tx:
        record = tx.session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
        if record is None:
            raise NotFound(f"no token named {name!r}")
        if record.revoked_at is None:
            record.revoked_at = clock.now()
            events.record(tx, EventKind.TOKEN_REVOKED, actor, after={"name": name})
    forget_recent()
    return record


_BY_HASH = (
    select(
        ApiToken.name,
        ApiToken.scope,
        ApiToken.queues,
        ApiToken.user,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        User.active.label("user_active"),
        User.role.label("user_role"),
    )
    .outerjoin(User, User.name == ApiToken.user)
    .where(ApiToken.token_hash == bindparam("h"))
)


def authenticate(token: str | None, *, engine=None) -> Principal:
    """The caller behind a bearer token; ``AuthenticationFailed`` for missing, unknown or revoked."""
    if not token:
        raise AuthenticationFailed("missing token: send 'Authorization: Bearer <token>'")
    digest = _hash(token)
    with store.read(engine) as tx:
        row = tx.execute(_BY_HASH, {"h": digest}).first()
    if row is None:
        raise AuthenticationFailed("unknown token")
    if row.revoked_at is not None:
        raise AuthenticationFailed(f"token {row.name!r} was revoked")
    if row.expires_at is not None and clock.parse(row.expires_at) <= clock.now():
        raise AuthenticationFailed(f"token {row.name!r} expired at {clock.iso(clock.parse(row.expires_at))}")
    if row.user is not None and not row.user_active:
        raise AuthenticationFailed(f"token {row.name!r} acts as {row.user}, whose account is not active")
    who = Principal(
        token=row.name, scope=row.scope, queues=tuple(row.queues or ()), user=row.user, role=row.user_role
    )
    _recent[digest] = (time.monotonic() + RECENT_SECONDS, who)
    return who


#: Tokens that authenticated in the last RECENT_SECONDS, by hash, in this process. A
#: busy API looks each token up once a second instead of on every request; revoking
#: clears this process's copy at once, and other processes' within the second.
RECENT_SECONDS = 1.0
_recent: dict[str, tuple[float, Principal]] = {}


def recently_authenticated(token: str) -> Principal | None:
    """The caller behind ``token`` if it authenticated here under a second ago."""
    hit = _recent.get(_hash(token))
    if hit is None or hit[0] < time.monotonic():
        return None
    return hit[1]


def forget_recent() -> None:
    _recent.clear()


_touched: dict[str, float] = {}
TOUCH_EVERY = 60.0


def touch_due(name: str) -> bool:
    """Whether :func:`touch` would write now."""
    return time.monotonic() - _touched.get(name, -TOUCH_EVERY) >= TOUCH_EVERY


def touch(name: str, *, engine=None) -> None:
    """Record when a token was last used: at most once a minute per token and process,
    so a busy token does not add a write to every request."""
    now = time.monotonic()
    if now - _touched.get(name, -TOUCH_EVERY) < TOUCH_EVERY:
        return
    _touched[name] = now
    with store.write(engine) as tx:
        tx.execute(update(ApiToken).where(ApiToken.name == name).values(last_used_at=clock.now()))
