"""Webhooks that receive decisions."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from ._lazy import lazy
from .base import (
    _actor,
    _echo_table,
    _engine,
    webhooks_app,
)

(webhooks,) = lazy("webhooks")


@webhooks_app.command("add")
def webhooks_add(
    queue: str,
    url: str,
    secret: Annotated[str | None, typer.Option(help="Signing secret (default: generated).")] = None,
) -> None:
    """POST QUEUE's decisions to URL, signed. Prints the signing secret."""
    _engine()
    hook, secret = webhooks.add(queue, url, secret=secret, actor=_actor())
    typer.echo(f"webhook {hook.id} for {queue} -> {url}")
    typer.echo(f"signing secret (shown once, stored encrypted): {secret}")


@webhooks_app.command("list")
def webhooks_list() -> None:
    """List webhooks."""
    _engine(read_only=True)
    _echo_table(
        [[h.id, h.queue, h.url, "yes" if h.active else "no"] for h in webhooks.all_webhooks()],
        ["id", "queue", "url", "active"],
    )


@webhooks_app.command("remove")
def webhooks_remove(webhook_id: int) -> None:
    """Stop sending to a webhook; what it had not received yet is cancelled (and stays listed)."""
    _engine()
    webhooks.remove(webhook_id, actor=_actor())
    typer.echo(f"webhook {webhook_id} removed; its pending deliveries were cancelled")


@webhooks_app.command("status")
def webhooks_status() -> None:
    """Deliveries per webhook: pending, delivered, failed, and the last error."""
    _engine(read_only=True)
    rows = webhooks.status()
    if not rows:
        typer.echo("no webhooks (add one: reviewqueue webhooks add QUEUE URL)")
        return
    _echo_table(
        [
            [r["id"], r["queue"], r["url"], r["pending"], r["delivered"], r["failed"], r["last_error"] or ""]
            for r in rows
        ],
        ["id", "queue", "url", "pending", "delivered", "failed", "last error"],
    )


@webhooks_app.command("worker")
def webhooks_worker() -> None:
    """Deliver webhooks in the foreground (reviewqueue api and up run this for you)."""
    engine = _engine()
    worker = webhooks.Worker(engine).start()
    typer.echo("delivering webhooks; Ctrl-C to stop")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    worker.stop()
