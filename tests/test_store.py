"""The storage layer: named queries store and read values exactly as SQLAlchemy's column
types do, units of work commit or roll back together, and inside a group each unit is
a savepoint whose failure undoes it alone (whatever kind of statement failed)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from reviewqueue import events, ingest, store
from reviewqueue.models import Event, Item, Queue, Review
from reviewqueue.store import queries
from reviewqueue.store.sql import Query
from reviewqueue.vocab import EventKind

from .conftest import item

items_t = Item.__table__
c = items_t.c
ROW = Query("test_row", "SELECT * FROM items WHERE id = :item_id")
TOUCH = Query(
    "test_touch",
    """
    UPDATE items SET lease_holder = :who, lease_expires_at = :until, priority = 7
    WHERE id = :item_id AND status = 'pending' RETURNING *
""",
)


def _stored(engine):
    out = ingest.submit(
        item(
            1,
            output={"text": "é <b>x</b>", "n": [1, 2.5, None]},
            confidence=0.25,
            context=[{"doc": "ünïcode"}],
            metadata={"k": "v"},
        ),
        engine=engine,
    )
    return out.id


def test_rows_read_back_as_sqlalchemy_reads_them(engine, queue):
    item_id = _stored(engine)
    with store.read(engine) as tx:
        ours = ROW.first(tx, {"item_id": item_id})
        theirs = tx.execute(select(items_t).where(c.id == item_id)).one()
    assert ours._asdict() == dict(theirs._mapping)
    assert ours.output == {"text": "é <b>x</b>", "n": [1, 2.5, None]}
    assert ours.created_at.tzinfo is not None and ours.confidence == 0.25
    with store.read(engine) as tx:
        assert ROW.first(tx, {"item_id": "no-such-item"}) is None
        assert ROW.rows(tx, {"item_id": "no-such-item"}) == []


def test_values_are_stored_as_sqlalchemy_stores_them(engine, queue):
    item_id = _stored(engine)
    until = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with store.write(engine) as tx:
        row = TOUCH.first(tx, {"item_id": item_id, "who": "ana", "until": until})
    assert (row.lease_holder, row.lease_expires_at, row.priority) == ("ana", until, 7)
    with store.read(engine) as tx:  # compared and read back by SQLAlchemy
        again = tx.execute(select(items_t).where(c.id == item_id, c.lease_expires_at == until)).one()
    assert (again.lease_holder, again.lease_expires_at, again.priority) == ("ana", until, 7)
    at = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    with store.write(engine) as tx:
        events.record(
            tx, EventKind.QUEUE_UPDATED, "ana", queue="support", after={"a": ["ü", 1]}, before=None, at=at
        )
    with store.read(engine) as tx:
        stored = tx.session.scalars(select(Event).where(Event.at == at)).one()
    assert (stored.after, stored.before, stored.kind) == ({"a": ["ü", 1]}, None, "queue.updated")


def test_json_parameters_keep_their_type(engine, queue):
    """A JSON string stays a JSON string (not text), None is JSON null."""
    item_id = _stored(engine)
    with store.write(engine) as tx:
        for value in ("plain text", {"k": [1, None]}, None, "x\nq\"'"):
            rv = queries.INSERT_REVIEW.first(
                tx,
                {
                    "item_id": item_id,
                    "queue": "support",
                    "reviewer": "ana",
                    "verdict": "correct",
                    "final_output": value,
                    "final_label": None,
                    "reason": None,
                    "comment": None,
                    "seconds_spent": None,
                    "edit_distance": None,
                    "adjudication": False,
                    "after_deadline": False,
                    "changed_fields": None,
                    "now": datetime.now(UTC),
                },
            )
            assert rv.final_output == value
            # SQLAlchemy's JSON type reads back what the named query stored.
            assert tx.execute(select(Review.final_output).where(Review.id == rv.id)).scalar() == value


def test_a_failed_unit_of_work_changes_nothing(engine, queue):
    item_id = _stored(engine)
    until = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(RuntimeError), store.write(engine) as tx:
        TOUCH.run(tx, {"item_id": item_id, "who": "ana", "until": until})
        raise RuntimeError("roll it back")
    with store.read(engine) as tx:
        assert ROW.first(tx, {"item_id": item_id}).lease_holder is None


@pytest.mark.parametrize("failure", ["python", "sql", "orm"])
def test_inside_a_group_a_failing_unit_is_undone_alone(engine, queue, failure):
    item_id = _stored(engine)
    until = datetime.now(UTC) + timedelta(hours=1)
    with store.group(engine) as group_tx:
        assert group_tx.grouped is False
        with pytest.raises((RuntimeError, DBAPIError)), store.write(engine) as tx:
            assert tx.grouped  # a savepoint of the group's transaction
            TOUCH.run(tx, {"item_id": item_id, "who": "ana", "until": until})
            if failure == "python":
                raise RuntimeError("undo this block only")
            if failure == "sql":
                tx.execute(text("INSERT INTO queues (name) VALUES (NULL)"))
            tx.session.add(Queue(name="support"))  # a duplicate primary key
            tx.session.flush()
        with store.write(engine) as tx:
            tx.session.add(Queue(name="kept"))
    with store.read(engine) as tx:
        assert ROW.first(tx, {"item_id": item_id}).lease_holder is None
        assert tx.session.get(Queue, "kept") is not None


def test_orm_and_named_queries_share_the_unit_of_work(engine, queue):
    with pytest.raises(RuntimeError), store.write(engine) as tx:
        tx.session.add(Queue(name="fresh"))
        events.record(tx, EventKind.QUEUE_CREATED, "ana", queue="fresh")  # flushes the session first
        raise RuntimeError("both go")
    with store.read(engine) as tx:
        assert tx.session.get(Queue, "fresh") is None
        assert tx.execute(select(Event).where(Event.queue == "fresh")).first() is None


def test_every_item_column_is_inserted_by_name():
    """Bulk ingest's rows line up with the statement's columns by name, not by hand."""
    assert queries.ItemRow._fields + ("created_at", "updated_at") == queries.INSERT_ITEMS.params
    assert set(queries.INSERT_ITEMS.params) == {col.name for col in items_t.columns} - {
        "lease_holder",
        "lease_expires_at",
        "decided_at",
        "purged_at",
        "reviews_done",  # the next three change only when a review lands
        "final_review_id",
        "agreement",
        "webhook_seq",  # changes only when a notification about the item is queued
        "deadline_state",  # these three change only when its deadline comes near or passes
        "deadline_action",
        "fallback_reason",
        "applied_at",  # set once, when the agent applies a tool call's decision
    }


def test_stream_tuples_reads_plain_rows(engine, queue):
    ids = [r.id for r in ingest.submit_many([item(i) for i in range(7)], engine=engine)]
    since = datetime(2000, 1, 1, tzinfo=UTC)
    stmt = select(c.id, c.confidence).where(c.queue == "support", c.created_at >= since).order_by(c.id)
    chunks = list(store.stream_tuples(engine, stmt, {}, size=3))
    assert [len(ch) for ch in chunks] == [3, 3, 1]
    assert [row[0] for ch in chunks for row in ch] == sorted(ids)
    assert all(type(row) is tuple for ch in chunks for row in ch)


def test_engines_carry_their_settings(tmp_path):
    from reviewqueue.settings import Settings

    engine = store.make_engine(f"sqlite:///{tmp_path / 'x.db'}", settings=Settings(undo_seconds=7))
    try:
        assert store.settings_of(engine).undo_seconds == 7
    finally:
        store.dispose(engine)


def test_update_through_core_and_named_query_agree(engine, queue):
    item_id = _stored(engine)
    with store.write(engine) as tx:
        tx.execute(update(items_t).where(c.id == item_id).values(priority=3))
        assert ROW.first(tx, {"item_id": item_id}).priority == 3


def test_sqlalchemy_joins_the_transaction_a_named_query_began(engine, queue):
    """A unit of work begins on the driver; SQLAlchemy's connection, made only when the
    unit first needs it, joins that transaction: both commit, or neither."""
    item_id = _stored(engine)
    until = datetime.now(UTC) + timedelta(hours=1)
    with store.write(engine) as tx:
        TOUCH.run(tx, {"item_id": item_id, "who": "ana", "until": until})
        tx.session.add(Queue(name="joined"))
    with pytest.raises(RuntimeError), store.write(engine) as tx:
        ROW.first(tx, {"item_id": item_id})
        tx.execute(update(items_t).where(c.id == item_id).values(priority=9))
        TOUCH.run(tx, {"item_id": item_id, "who": "bo", "until": until})
        raise RuntimeError("neither stays")
    with store.read(engine) as tx:
        row = ROW.first(tx, {"item_id": item_id})
        assert (row.lease_holder, row.priority) == ("ana", 7)
        assert tx.session.get(Queue, "joined") is not None


def _driver_errors(engine) -> tuple:
    if engine.dialect.name == "sqlite":
        import sqlite3

        return (sqlite3.Error,)
    import psycopg

    return (psycopg.Error,)


def test_failed_units_give_their_connections_back(engine, queue):
    """Every unit of work returns its connection to the pool, whether it commits, fails
    in SQL or fails in Python, and the connection is usable afterwards."""
    for k in range(60):
        with pytest.raises((RuntimeError, DBAPIError, *_driver_errors(engine))), store.write(engine) as tx:
            if k % 3 == 0:
                tx.execute(text("INSERT INTO queues (name) VALUES (NULL)"))
            elif k % 3 == 1:
                Query("test_bad", "SELECT no_such_column FROM items").rows(tx)
            else:
                raise RuntimeError("python")
        with store.read(engine) as tx:
            assert ROW.first(tx, {"item_id": "none"}) is None
    assert engine.pool.checkedout() == 0


def test_a_postgres_connection_closed_while_idle_is_replaced(engine, queue, monkeypatch):
    """A pooled connection the server closed while it sat idle (a restart, a proxy's
    idle timeout) is pinged and replaced at checkout: the next unit of work succeeds."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite connections are files, not sessions a server can close")
    from reviewqueue.store import engine as engine_module

    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 0.0)
    with store.read(engine) as tx:
        pid = tx.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = store.make_engine(engine.url.render_as_string(hide_password=False), pool=False)
    try:
        with killer.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        store.dispose(killer)
    for _ in range(engine.pool.size() + 2):  # whichever pooled connection comes next
        with store.read(engine) as tx:
            assert ROW.first(tx, {"item_id": "none"}) is None
