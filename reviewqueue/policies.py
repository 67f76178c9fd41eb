"""Decisions admins make while the product runs, kept in the database (``policies``):
every process reads the same, and every change is an event.

- ``export_roles``: the roles that may run ad-hoc (week or range) exports from the
  review app. Feeds (incremental exports, the weekly dataset) are admins' alone, so
  nobody else can change what the dataset contains.
"""

from __future__ import annotations

from typing import Any

from . import clock, events, store
from .errors import PermissionDenied, invalid
from .models import Policy
from .vocab import EventKind, Role

DEFAULTS: dict[str, Any] = {
    "export_roles": [Role.LEAD, Role.ADMIN],
}


def get(name: str, *, engine=None) -> Any:
    if name not in DEFAULTS:
        raise invalid("name", f"no policy {name!r}; the policies are {', '.join(DEFAULTS)}")
    with store.read(engine) as tx:
        row = tx.session.get(Policy, name)
    return DEFAULTS[name] if row is None else row.value


def update(name: str, value: Any, *, actor: str, engine=None) -> None:
    if name not in DEFAULTS:
        raise invalid("name", f"no policy {name!r}; the policies are {', '.join(DEFAULTS)}")
    if name == "export_roles":
        bad = sorted(set_of(value) - {str(r) for r in Role})
        if bad or not isinstance(value, list):
            raise invalid(
                "export_roles", f"a list of roles ({', '.join(Role)}); not {', '.join(bad) or value!r}"
            )
    with store.write(engine) as tx:
        row = tx.session.get(Policy, name)
        before = DEFAULTS[name] if row is None else row.value
        if row is None:
            tx.session.add(Policy(name=name, value=value, updated_by=actor, updated_at=clock.now()))
        else:
            row.value, row.updated_by, row.updated_at = value, actor, clock.now()
        events.record(tx, EventKind.POLICY_UPDATED, actor, before={name: before}, after={name: value})


def set_of(value: Any) -> frozenset:
    return frozenset(value) if isinstance(value, list) else frozenset()


def may_export(role: str, *, feed: bool, engine=None) -> bool:
    """Whether a signed-in ``role`` may run an export: feeds are admins' only; ad-hoc
    exports those of ``export_roles``."""
    if role == Role.ADMIN:
        return True
    return not feed and role in get("export_roles", engine=engine)


def require_export(role: str, *, feed: bool, engine=None) -> None:
    if not may_export(role, feed=feed, engine=engine):
        what = "the incremental feeds" if feed else "exports"
        raise PermissionDenied(f"your role ({role}) may not run {what}; an admin decides who may")
