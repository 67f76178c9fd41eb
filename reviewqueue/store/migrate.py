"""Schema migrations (Alembic, ``reviewqueue/migrations``), applied on every start."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from .engine import get_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Bring the schema up to date. Safe to call from several processes at once (an
    advisory lock on PostgreSQL, SQLite's write lock)."""
    from alembic import command

    engine = engine or get_engine()
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check_exists(url: str) -> None:
    """For a SQLite file that is not there, an error saying so (commands that only read
    never create a database: a mistyped path once answered "no queues yet")."""
    import os

    from sqlalchemy.engine import make_url

    from ..errors import ReviewQueueError

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not os.path.exists(parsed.database):
            raise ReviewQueueError(
                f"there is no database at {parsed.database} (REVIEWQUEUE_DATABASE_URL); "
                "create it with: reviewqueue init"
            )


def open_database(url: str, *, must_exist: bool = False) -> Engine:
    """The engine for ``url``, its schema brought up to date, for a command (with
    ``must_exist``, see :func:`check_exists`). A database that cannot be used is a
    :class:`~reviewqueue.errors.DatabaseUnreachable` saying why, in one line."""
    from sqlalchemy.exc import DBAPIError

    from ..errors import DatabaseUnreachable

    if must_exist:
        check_exists(url)
    engine = get_engine(url)
    try:
        upgrade(engine)
    except DBAPIError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseUnreachable(
            f"cannot use the database at {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from None
    return engine


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = engine or get_engine()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
