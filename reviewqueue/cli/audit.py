"""Governance: the audit log, retention and erasure."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import ReviewQueueError, ValidationFailed
from ._lazy import lazy
from .base import (
    _actor,
    _engine,
    app,
    audit_app,
)

(clock,) = lazy("clock")


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 start (inclusive).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 end (exclusive).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind (item.decided), or a prefix (item.).")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many events.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List events, oldest first (see also: audit verify, audit seal)."""
    if ctx.invoked_subcommand is not None:
        return
    from .. import audit

    _engine(read_only=True)
    flt = audit.EventFilter(
        since=_when(since, "--since"), until=_when(until, "--until"), actor=actor, kind=kind, queue=queue
    )
    after, shown = None, 0
    while shown < limit:
        batch = audit.events(flt, limit=min(1000, limit - shown), after_id=after)
        for e in batch:
            if as_json:
                typer.echo(json.dumps(audit.as_dict(e), ensure_ascii=False))
            else:
                typer.echo(
                    f"{clock.iso(clock.parse(e.at))}  {e.actor:<20}  {e.kind:<22}  {e.queue or '':<16}  "
                    f"{e.item_id or ''}  {json.dumps(e.after, ensure_ascii=False) if e.after else ''}"
                )
        shown += len(batch)
        if len(batch) < 1000:
            break
        after = batch[-1].id


def _when(value: str | None, flag: str):
    try:
        return clock.parse(value) if value else None
    except ValueError:
        raise ValidationFailed(
            f"{flag} takes an ISO 8601 time, e.g. 2026-11-16T00:00:00Z (got {value!r})"
        ) from None


@audit_app.command("verify")
def audit_verify(
    expect: Annotated[
        str | None, typer.Option("--expect", help="The head you wrote down; fail if it differs.")
    ] = None,
) -> None:
    """Check the audit log: every event's MAC, every seal against its events and this
    host's anchor file; exit 1 if anything was edited, deleted, added or left unsealed."""
    from .. import audit

    _engine(read_only=True)
    result = audit.verify()
    if not result.ok:
        raise ReviewQueueError(f"audit log verification FAILED: {result.problem}")
    if expect and expect != result.head:
        raise ReviewQueueError(
            f"audit log head is {result.head}, not the expected {expect}: seals were removed"
        )
    typer.echo(
        f"audit log verified: {result.events} event(s) in {result.seals} seal(s); head {result.head}; "
        f"{result.unsealed} event(s) since the last seal; {result.anchored} seal(s) confirmed by this host's "
        "anchor file"
    )


@audit_app.command("seal")
def audit_seal() -> None:
    """Seal what has settled since the last seal (the API and up do this every 30 s)."""
    from .. import audit

    _engine()
    sealed = audit.seal()
    typer.echo(f"sealed {sealed.events} event(s); head {sealed.chain}" if sealed else "nothing new to seal")


@app.command("purge")
def purge_cmd(queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.")] = None) -> None:
    """Purge the content of items older than their queue's retention (the API and up do this hourly)."""
    from .. import retention

    _engine()
    done = retention.purge(queue=queue)
    typer.echo(", ".join(f"{q}: {n} item(s) purged" for q, n in done.items()) or "nothing to purge")


@app.command("erase")
def erase_cmd(
    queue: Annotated[str | None, typer.Option("--queue", help="The item's queue.")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id", help="Your id for the item.")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Or the item's reviewqueue id.")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the audit log, e.g. a ticket).")
    ] = None,
) -> None:
    """Erase one item's content everywhere it is stored (a data subject's request)."""
    from .. import retention

    _engine()
    if not item and not (queue and external_id):
        raise ValidationFailed("give --item ID, or --queue and --external-id")
    erased = retention.erase(item, queue=queue, external_id=external_id, reason=reason, actor=_actor())
    typer.echo(f"erased item {erased}")
