"""The server key."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._lazy import lazy
from .base import _actor, _engine, key_app

(rotation,) = lazy("rotation")


@key_app.command("rotate")
def key_rotate(
    new_key_stdin: Annotated[
        bool,
        typer.Option("--new-key-stdin", help="Read the new key from standard input (default: make one)."),
    ] = False,
) -> None:
    """Rotate the server key: stop every other reviewqueue process of this database first.
    Verifies the audit log, re-encrypts stored secrets, keeps the old key retired for the
    old seals. With a key file, writes the new key there; with REVIEWQUEUE_SECRET_KEY,
    prints what to set on every host."""
    _engine()
    given = new_key_stdin
    new = sys.stdin.readline().strip() if given else rotation.new_key()
    done = rotation.rotate(new, actor=_actor())
    typer.echo(
        f"rotated the server key: fingerprint {done.old_fingerprint} -> {done.new_fingerprint}; "
        f"{done.secrets} stored secret(s) re-encrypted, {done.seals} seal(s) marked with the old key"
    )
    if done.key_file:
        typer.echo(
            f"the new key is in {done.key_file}; the old one is kept in {done.key_file}.retired (it verifies "
            "the old seals: keep it, and copy both files to every host of this database)"
        )
    else:
        typer.echo("now, on every host, before starting reviewqueue again:")
        typer.echo("  REVIEWQUEUE_SECRET_KEY=" + ("(the key you gave)" if given else new))
        typer.echo(
            "  REVIEWQUEUE_SECRET_KEYS_RETIRED=(the old key, after any keys already retired, comma-separated)"
        )
