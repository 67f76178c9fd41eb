"""The Alembic migrations, run from an empty database, produce exactly the schema the
models describe; and they can be run again (and from several processes) safely."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from reviewqueue import db


def test_migrated_schema_matches_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []


def test_upgrade_from_empty_and_again(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    db.upgrade(engine)
    db.upgrade(engine)  # a second run finds nothing to do
    tables = set(inspect(engine).get_table_names())
    assert {"queues", "items", "reviews", "events", "users", "alembic_version"} <= tables
    assert db.current_revision(engine) is not None
    engine.dispose()


def test_sqlite_is_in_wal_mode(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
