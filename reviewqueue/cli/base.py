"""The ``reviewqueue`` command: what every command shares (the app, its groups, the actor,
the engine) and :func:`main`, which turns every domain error into a message.

Every command prints what it did; errors from the domain become one line on stderr and
exit status 1 (2 for usage errors), never a traceback. The commands live in one module
per concept (``queues.py``, ``users.py``, ...), as the API's routes do.
"""

from __future__ import annotations

import os

import typer

from ..errors import QueueNotFound, ReviewQueueError
from ._lazy import lazy

store, _settings = lazy("store", "settings")


def get_settings():
    return _settings.get_settings()


app = typer.Typer(
    help="reviewqueue: the human-review queue for AI outputs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
queue_app = typer.Typer(help="Create, list and change queues.", no_args_is_help=True)
user_app = typer.Typer(help="Manage reviewer and admin accounts.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks that receive decisions.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: read it, seal it, verify it.", invoke_without_command=True)
app.add_typer(queue_app, name="queue")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(audit_app, name="audit")
notify_app = typer.Typer(help="Alerts to Slack-compatible webhooks and e-mail.", no_args_is_help=True)
notify_add_app = typer.Typer(help="Add where alerts go.", no_args_is_help=True)
notify_app.add_typer(notify_add_app, name="add")
app.add_typer(notify_app, name="notify")
key_app = typer.Typer(help="The server key: rotate it.", no_args_is_help=True)
app.add_typer(key_app, name="key")


def _actor() -> str:
    """Who is acting from the command line: the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _engine(*, read_only: bool = False):
    """The database, brought up to date, with this host's key checked against it.
    ``read_only`` commands never create one."""
    from .. import cluster

    engine = store.open_database(store.normalise_url(get_settings().database_url), must_exist=read_only)
    cluster.check_key(engine=engine)  # another host's key: refuse, saying what to set
    return engine


def _echo_table(rows: list[list], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))
    typer.echo(line)
    typer.echo("  ".join("-" * w for w in widths))
    for row in rows:
        typer.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False)))


_FLAGS = {
    "week": "--week",
    "since": "--since",
    "until": "--until",
    "format": "--format",
    "verdict": "--verdict",
    "queue": "--queue",
    "user": "--user",
    "scope": "--scope",
    "name": "--name",
    "role": "--role",
    "threshold": "--threshold",
    "audit_rate": "--audit-rate",
    "lease_seconds": "--lease-seconds",
    "labels": "--label",
    "label_thresholds": "--label-threshold",
    "reject_reasons": "--reject-reason",
    "description": "--description",
    "password": "the password",
}


def _hint(exc: ReviewQueueError) -> str | None:
    """What to do next, in CLI terms."""
    if isinstance(exc, QueueNotFound):
        return f"create it first: reviewqueue queue create {exc.name}"
    return None


def main() -> None:
    from . import commands  # noqa: F401  (registers every command on the app)

    try:
        app()
    except OSError as exc:  # a file the command was given or writes: say which
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        raise SystemExit(1) from None
    except ReviewQueueError as exc:
        typer.echo(f"error: {exc}", err=True)
        errors = getattr(exc, "errors", None) or []
        if len(errors) > 1 or (errors and errors[0].get("msg") != str(exc)):
            for err in errors[:20]:
                loc = [str(p) for p in err.get("loc", [])]
                where = _FLAGS.get(loc[0], ".".join(loc)) if len(loc) == 1 else ".".join(loc)
                typer.echo(f"  {where}: {err['msg']}", err=True)
        hint = _hint(exc)
        if hint:
            typer.echo(f"  {hint}", err=True)
        raise SystemExit(1) from None
    except Exception as exc:  # a defect: one line, and the traceback on request
        if os.environ.get("REVIEWQUEUE_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (this is a bug; REVIEWQUEUE_DEBUG=1 shows where)",
            err=True,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
