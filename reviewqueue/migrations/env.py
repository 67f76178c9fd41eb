"""Alembic environment. Runs on the connection handed over by ``reviewqueue.store.upgrade``
(or opens one from ``sqlalchemy.url`` when alembic is run by hand)."""

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

from reviewqueue import models  # noqa: F401  (registers the tables)
from reviewqueue.store import make_engine

target_metadata = SQLModel.metadata
config = context.config


def _run(connection) -> None:
    if connection.dialect.name == "postgresql":
        # Several processes (API workers, the UI) may start at once: one migrates,
        # the others wait here and then find nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(4207001)"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url"), pool=False)
    with engine.begin() as conn:
        _run(conn)
