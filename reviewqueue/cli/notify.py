"""Alerts that reach people: where they go, and checking the rules now."""

from __future__ import annotations

from typing import Annotated

import typer

from ._lazy import lazy
from .base import _actor, _echo_table, _engine, notify_add_app, notify_app

(notify,) = lazy("notify")

Queues = Annotated[
    list[str] | None, typer.Option("--queue", help="Only this queue's alerts; repeat (default: every queue).")
]
NoDigest = Annotated[bool, typer.Option("--no-digest", help="Do not send it the daily digest.")]


@notify_add_app.command("slack")
def notify_add_slack(url: str, queue: Queues = None, no_digest: NoDigest = False) -> None:
    """Send alerts to a Slack-compatible incoming webhook URL (Slack, Mattermost, Teams)."""
    _engine()
    channel = notify.add("slack", url, queues_=queue, digest=not no_digest, actor=_actor())
    typer.echo(
        f"channel {channel.id}: alerts -> {notify.describe_target('slack', url)} (the URL is stored encrypted)"
    )


@notify_add_app.command("email")
def notify_add_email(address: str, queue: Queues = None, no_digest: NoDigest = False) -> None:
    """Send alerts to ADDRESS over SMTP (REVIEWQUEUE_SMTP_HOST, _PORT, _USER, _PASSWORD, _FROM)."""
    _engine()
    channel = notify.add("email", address, queues_=queue, digest=not no_digest, actor=_actor())
    typer.echo(f"channel {channel.id}: alerts -> {address}")


@notify_app.command("list")
def notify_list() -> None:
    """Where alerts go."""
    _engine(read_only=True)
    rows = notify.channels()
    if not rows:
        typer.echo("no channels (add one: reviewqueue notify add slack URL, or notify add email ADDRESS)")
        return
    _echo_table(
        [
            [
                r["id"],
                r["kind"],
                r["to"],
                ", ".join(r["queues"]) or "all",
                "yes" if r["digest"] else "no",
                "yes" if r["active"] else "no",
                r["last_error"] or "",
            ]
            for r in rows
        ],
        ["id", "kind", "to", "queues", "digest", "active", "last error"],
    )


@notify_app.command("remove")
def notify_remove(channel_id: int) -> None:
    """Stop sending alerts to a channel (kept, inactive, for the record)."""
    _engine()
    notify.remove(channel_id, actor=_actor())
    typer.echo(f"channel {channel_id} removed")


@notify_app.command("test")
def notify_test(queue: Annotated[str | None, typer.Option(help="As an alert of this queue.")] = None) -> None:
    """Send a test message to every active channel (of QUEUE)."""
    _engine()
    outcome = notify.deliver(
        "reviewqueue: test message", "If you can read this, alerts reach you.", queue=queue
    )
    if not outcome:
        typer.echo("no active channel to send to")
    for channel_id, error in outcome.items():
        typer.echo(f"channel {channel_id}: {'sent' if error is None else 'failed: ' + error}")
    if any(outcome.values()):
        raise typer.Exit(1)


@notify_app.command("check")
def notify_check() -> None:
    """Check every queue's alert rules now (the background job does this every 30 s)."""
    _engine()
    readings = notify.readings()
    if not readings:
        typer.echo("no alert rules (set some: reviewqueue queue update NAME --alert-oldest-seconds 3600 ...)")
        return
    sent = notify.check()
    _echo_table(
        [[r.queue, r.rule, round(r.value, 4), r.threshold, "FIRING" if r.firing else "ok"] for r in readings],
        ["queue", "rule", "value", "threshold", "state"],
    )
    for r in sent:
        typer.echo(f"sent: {r.queue} {r.rule}")


@notify_app.command("digest")
def notify_digest(send: Annotated[bool, typer.Option("--send", help="Send it now.")] = False) -> None:
    """Print the daily digest (or --send it to the channels that take it)."""
    _engine(read_only=not send)
    typer.echo(notify.digest_text())
    if send:
        for channel_id, error in notify.send_digest().items():
            typer.echo(f"channel {channel_id}: {'sent' if error is None else 'failed: ' + error}")
