"""Accounts: reviewers, leads and admins."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..vocab import Role
from ._lazy import lazy
from .base import (
    _actor,
    _echo_table,
    _engine,
    user_app,
)

tokens, users = lazy("tokens", "users")


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[Role, typer.Option(help="What the account may do.")] = Role.REVIEWER,
    email: Annotated[str | None, typer.Option(help="E-mail, for single sign-on.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an account (asks for the password unless --password-stdin)."""
    _engine()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    users.add(name, role=role, password=password, email=email, actor=_actor())
    typer.echo(f"created {role} {name}")


@user_app.command("list")
def user_list() -> None:
    """List accounts."""
    _engine(read_only=True)
    _echo_table(
        [[u.name, u.role, u.email or "", "yes" if u.active else "no"] for u in users.all_users()],
        ["name", "role", "email", "active"],
    )


@user_app.command("deactivate")
def user_deactivate(name: str) -> None:
    """Stop an account at once: sign-in, open sessions and its tokens (its history stays)."""
    _engine()
    users.update(name, active=False, actor=_actor())
    typer.echo(f"deactivated {name}")


@user_app.command("activate")
def user_activate(name: str) -> None:
    """Let a deactivated account sign in again."""
    _engine()
    users.update(name, active=True, actor=_actor())
    typer.echo(f"activated {name}")


@user_app.command("role")
def user_role(name: str, role: Annotated[Role, typer.Argument(help="The new role.")]) -> None:
    """Change what an account may do; takes effect on its next request."""
    _engine()
    users.update(name, role=role, actor=_actor())
    typer.echo(f"{name} is now {role}")


@user_app.command("passwd")
def user_passwd(
    name: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a new password for an account (asks for it unless --password-stdin)."""
    _engine()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    users.update(name, password=password, actor=_actor())
    typer.echo(f"password of {name} changed")
