"""The Alembic migrations, run from an empty database, produce exactly the schema the
models describe; and they can be run again (and from several processes) safely."""

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from reviewqueue import store


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
    cases = [
        ("a b c", "approve", "a b c"),
        ("a b c", "correct", "a x c d"),
        ({"k": 1}, "correct", {"k": 2}),
        ("a", "reject", None),
    ]
    stamp = "2026-11-01 00:00:00.000000"
    with engine.begin() as conn:  # the schema of 0003, written as the code of then wrote it
        conn.exec_driver_sql(
            "INSERT INTO queues (name, description, threshold, label_thresholds, audit_rate, lease_seconds, "
            "reviews_required, labels, reject_reasons, created_at, updated_at) "
            "VALUES ('q', '', 0.8, '{}', 0, 600, 1, '[]', '[\"other\"]', ?, ?)",
            (stamp, stamp),
        )
        for n, (output, _, _) in enumerate(cases):
            conn.exec_driver_sql(
                "INSERT INTO items (id, queue, external_id, input, output, confidence, context, metadata, priority, "
                "status, route, claim_order, created_at, updated_at) VALUES (?, 'q', ?, '\"in\"', ?, 0.1, '[]', '{}', "
                "0, 'pending', 'below_threshold', ?, ?, ?)",
                (f"id-{n}", f"i{n}", json.dumps(output), f"o{n}", stamp, stamp),
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


def test_0005_and_0006_upgrade_a_database_in_use(tmp_path, monkeypatch):
    """A database of 0004 with queues, items, decisions, a webhook and its outbox
    upgrades with the foreign keys on: nothing lost, the webhook secret encrypted."""
    monkeypatch.setenv("REVIEWQUEUE_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    engine = store.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    store.upgrade(engine, "0004")
    stamp = "2026-11-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO queues (name, description, threshold, label_thresholds, audit_rate, lease_seconds, "
            "reviews_required, labels, reject_reasons, created_at, updated_at) "
            "VALUES ('q', '', 0.8, '{}', 0, 600, 1, '[]', '[\"other\"]', ?, ?)",
            (stamp, stamp),
        )
        conn.exec_driver_sql(
            "INSERT INTO items (id, queue, external_id, input, output, confidence, context, metadata, priority, "
            "status, route, claim_order, created_at, updated_at) VALUES ('i1', 'q', 'e1', '\"in\"', '\"out\"', 0.1, "
            "'[]', '{}', 0, 'approved', 'below_threshold', 'o', ?, ?)",
            (stamp, stamp),
        )
        conn.exec_driver_sql(
            "INSERT INTO webhooks (queue, url, secret, active, created_at) "
            "VALUES ('q', 'https://example.com/h', 'plain-secret', 1, ?)",
            (stamp,),
        )
        conn.exec_driver_sql(
            "INSERT INTO webhook_deliveries (event_id, webhook_id, kind, body, status, attempts, next_attempt_at, "
            "created_at) VALUES ('ev', 1, 'item.decided', '{}', 'pending', 0, ?, ?)",
            (stamp, stamp),
        )
        conn.exec_driver_sql(
            "INSERT INTO export_runs (queue, format, verdicts, mode, since, until, rows, path, sha256, created_by, "
            "created_at) VALUES ('q', 'jsonl', '', 'incremental', ?, ?, 1, '/srv/out/q/p/data.jsonl', 'x', 'cli', ?)",
            (stamp, stamp, stamp),
        )
    store.upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM webhook_deliveries").scalar() == 1
        secret = conn.exec_driver_sql("SELECT secret FROM webhooks").scalar()
        feed = conn.exec_driver_sql("SELECT feed FROM export_runs").scalar()
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    from reviewqueue import keys

    assert secret.startswith("enc:v1:") and keys.unseal(secret, get_settings()) == "plain-secret"
    # 0005 named the old folder's default feed after it; 0010 names default feeds after
    # their format (and filter) only, so every host's cron line continues the same feed.
    assert feed == "jsonl"
    engine.dispose()
    get_settings.cache_clear()
