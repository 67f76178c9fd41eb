"""API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ValidationFailed
from ..vocab import Scope
from ._lazy import lazy
from .base import (
    _actor,
    _echo_table,
    _engine,
    token_app,
)

clock, queues, store, tokens = lazy("clock", "queues", "store", "tokens")


def _duration(spec: str | None):
    """``90d``, ``12h``, ``30m``: a timedelta."""
    from datetime import timedelta

    if spec is None:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    try:
        value = float(spec[:-1])
        if spec[-1] not in units or value <= 0:
            raise ValueError(spec)
    except ValueError:
        raise ValidationFailed(
            f"--expires-in takes a number and d, h or m, e.g. 90d (got {spec!r})"
        ) from None
    return timedelta(**{units[spec[-1]]: value})


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name to list and revoke it by.")],
    scope: Annotated[Scope, typer.Option("--scope", help="What the token may do.")],
    queue: Annotated[list[str] | None, typer.Option("--queue", help="Limit to this queue; repeat.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="The user a review token acts as.")] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Stop working after this long: 90d, 12h, 30m.")
    ] = None,
) -> None:
    """Create an API token. The token is printed once, alone on the last line."""
    _engine()
    record, plaintext = tokens.create(
        name, scope, queues=queue or [], user=user, expires_in=_duration(expires_in), actor=_actor()
    )
    limits = ", ".join(record.queues) or "all queues"
    until = f", until {clock.iso(record.expires_at)}" if record.expires_at else ""
    typer.echo(
        f"created {scope} token {name!r} for {limits}{until}; store it now, it is not shown again:", err=True
    )
    typer.echo(plaintext)


def _token_state(t) -> str:
    if t.revoked_at:
        return "revoked"
    if t.expires_at and t.expires_at <= clock.now():
        return "expired"
    return "active"


@token_app.command("list")
def token_list() -> None:
    """List tokens (never the tokens themselves), with their expiry."""
    _engine(read_only=True)
    _echo_table(
        [
            [
                t.name,
                t.scope,
                ",".join(t.queues) or "*",
                t.user or "",
                t.prefix + "...",
                _token_state(t),
                clock.iso(t.expires_at) or "never",
                clock.iso(t.last_used_at) or "",
            ]
            for t in tokens.all_tokens()
        ],
        ["name", "scope", "queues", "user", "token", "state", "expires", "last used"],
    )


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke a token by name; it stops working at once."""
    _engine()
    tokens.revoke(name, actor=_actor())
    typer.echo(f"revoked {name}")
