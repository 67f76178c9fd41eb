"""The Alembic migrations, run from an empty database, produce exactly the schema the
models describe; and they can be run again (and from several processes) safely."""

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from reviewqueue import ingest, queues, store


def test_migrated_schema_matches_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []


def test_upgrade_from_empty_and_again(tmp_path):
    engine = store.make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    store.upgrade(engine)
    store.upgrade(engine)  # a second run finds nothing to do
    tables = set(inspect(engine).get_table_names())
    assert {"queues", "items", "reviews", "events", "users", "alembic_version"} <= tables
    assert store.current_revision(engine) is not None
    engine.dispose()


def test_sqlite_is_in_wal_mode(tmp_path):
    engine = store.make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_0004_backfills_edit_distance(tmp_path):
    """Decisions recorded before reviews.edit_distance existed get the distance exports
    used to compute per row."""
    engine = store.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    store.upgrade(engine, "0003")
    queues.create("q", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
    cases = [
        ("a b c", "approve", "a b c"),
        ("a b c", "correct", "a x c d"),
        ({"k": 1}, "correct", {"k": 2}),
        ("a", "reject", None),
    ]
    for n, (output, _, _) in enumerate(cases):
        ingest.submit(
            {"queue": "q", "input": "in", "output": output, "confidence": 0.1, "external_id": f"i{n}"},
            engine=engine,
        )
    with engine.begin() as conn:  # as the old code wrote them: no edit_distance column yet
        for n, (_, verdict, final) in enumerate(cases):
            conn.exec_driver_sql(
                "INSERT INTO reviews (item_id, queue, reviewer, verdict, final_output, created_at) SELECT id, 'q',"
                " 'ann', ?, ?, '2026-11-01 00:00:00.000000' FROM items WHERE external_id = ?",
                (verdict, None if final is None else json.dumps(final), f"i{n}"),
            )
    store.upgrade(engine)
    with engine.connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT i.external_id, r.edit_distance FROM reviews r JOIN items i"
            " ON i.id = r.item_id ORDER BY i.external_id"
        ).all()
    assert [tuple(r) for r in got] == [("i0", 0), ("i1", 2), ("i2", 1), ("i3", None)]
    engine.dispose()
