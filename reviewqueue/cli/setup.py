"""The installation: version, the database schema, the demo."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from ._lazy import lazy
from .base import (
    _actor,
    _engine,
    app,
    db_app,
    get_settings,
)

demo, queues, store, users = lazy("demo", "queues", "store", "users")


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


@app.command()
def init() -> None:
    """Create the database (or bring its schema up to date)."""
    engine = _engine()
    typer.echo(
        f"database ready at {engine.url.render_as_string(hide_password=True)} (schema {store.current_revision(engine)})"
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    engine = store.get_engine()
    store.upgrade(engine, revision)
    typer.echo(f"schema at {store.current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    store.check_exists(store.normalise_url(get_settings().database_url))
    typer.echo(store.current_revision(store.get_engine()) or "empty (run: reviewqueue db upgrade)")


def _print_created(result: dict) -> None:
    """Credentials the demo just created: shown this once, never stored in plain text."""
    if result["logins"]:
        typer.echo("demo logins (shown once; reset with: reviewqueue user passwd NAME):")
        for name, role, password in result["logins"]:
            typer.echo(f"  {role:<8}  user {name!r}  password {password!r}")
    if result["token"]:
        typer.echo(f"demo API token (admin scope, shown once): {result['token']}")


@app.command("demo")
def demo_cmd(
    remove: Annotated[
        bool, typer.Option("--remove", help="Deactivate the demo accounts and revoke its token.")
    ] = False,
) -> None:
    """Seed demo queues, a few hundred realistic items, demo accounts and a token."""
    engine = _engine()
    if remove:
        gone = demo.remove(actor=_actor(), engine=engine)
        typer.echo(
            "; ".join(f"{kind} {name} disabled" for kind, name in gone)
            or "no demo accounts or token are active"
        )
        if not users.active_admins(engine=engine):
            typer.echo(
                "warning: no active admin is left: nobody can change settings in the review app; "
                "create one with: reviewqueue user add NAME --role admin",
                err=True,
            )
        return
    result = demo.seed(engine=engine)
    typer.echo(f"demo data: {result['items']} new item(s), {result['pending']} waiting for review")
    _print_created(result)
    if not result["logins"]:
        typer.echo("the demo accounts exist already; their passwords were shown when they were made")
