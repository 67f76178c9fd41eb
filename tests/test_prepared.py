"""``db.Prepared`` runs Core statements on the driver's cursor: values must go in and
come out exactly as SQLAlchemy's own ``conn.execute`` gives them, inside the same
transaction (and savepoint) as everything else on the connection."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, select, update

from reviewqueue import db, ingest
from reviewqueue.db import Prepared
from reviewqueue.models import Event, Item

from .conftest import item

items_t = Item.__table__
events_t = Event.__table__
c = items_t.c

ROW = Prepared(select(items_t).where(c.id == bindparam("b_id")))
TOUCH = Prepared(
    update(items_t).where(c.id == bindparam("b_id"), c.status == "pending")
    .values(lease_holder=bindparam("b_who"), lease_expires_at=bindparam("b_until"), priority=7)
    .returning(*c)
)
EVENT_KEYS = ["at", "actor", "kind", "item_id", "queue", "before", "after"]
INSERT_EVENT = Prepared(events_t.insert().returning(*events_t.c), keys=EVENT_KEYS)


def _stored(engine, queue):
    out = ingest.submit(item(1, output={"text": "é <b>x</b>", "n": [1, 2.5, None]}, confidence=0.25,
                             context=[{"doc": "ünïcode"}], metadata={"k": "v"}), engine=engine)
    return out.id


def test_rows_equal_sqlalchemys_own(engine, queue):
    item_id = _stored(engine, queue)
    with db.read_conn(engine) as conn:
        ours = ROW.first(conn, {"b_id": item_id})
        theirs = conn.execute(ROW.stmt, {"b_id": item_id}).one()
    assert ours._asdict() == dict(theirs._mapping)
    assert ours.output == {"text": "é <b>x</b>", "n": [1, 2.5, None]}
    assert ours.created_at.tzinfo is not None and ours.confidence == 0.25
    with db.read_conn(engine) as conn:
        assert ROW.first(conn, {"b_id": "no-such-item"}) is None
        assert ROW.rows(conn, {"b_id": "no-such-item"}) == []


def test_binds_are_processed_and_literal_values_kept(engine, queue):
    item_id = _stored(engine, queue)
    until = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with db.writing(engine) as conn:
        row = TOUCH.first(conn, {"b_id": item_id, "b_who": "ana", "b_until": until})
    assert (row.lease_holder, row.lease_expires_at, row.priority) == ("ana", until, 7)
    with db.read_conn(engine) as conn:  # stored the way SQLAlchemy reads it back
        again = conn.execute(select(items_t).where(c.id == item_id)).one()
    assert (again.lease_holder, again.lease_expires_at, again.priority) == ("ana", until, 7)
    with db.writing(engine) as conn:  # the literal status condition is bound too
        assert TOUCH.first(conn, {"b_id": item_id, "b_who": "bo", "b_until": until}) is not None
        conn.execute(update(items_t).where(c.id == item_id).values(status="approved"))
        assert TOUCH.first(conn, {"b_id": item_id, "b_who": "cy", "b_until": until}) is None


def test_insert_with_json_and_returning(engine, queue):
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    with db.writing(engine) as conn:
        row = INSERT_EVENT.first(conn, {"at": at, "actor": "ana", "kind": "test.kind", "item_id": None,
                                        "queue": "support", "before": None, "after": {"a": ["ü", 1]}})
    assert row.id > 0 and row.at == at and row.after == {"a": ["ü", 1]} and row.before is None
    with db.read_conn(engine) as conn:
        stored = conn.execute(select(events_t).where(events_t.c.id == row.id)).one()
    assert dict(stored._mapping) == row._asdict()


def test_runs_in_the_connections_transaction(engine, queue):
    item_id = _stored(engine, queue)
    until = datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(RuntimeError), db.writing(engine) as conn:
        TOUCH.run(conn, {"b_id": item_id, "b_who": "ana", "b_until": until})
        raise RuntimeError("roll it back")
    with db.read_conn(engine) as conn:
        assert ROW.first(conn, {"b_id": item_id}).lease_holder is None
    # Inside a group, a failing block's driver-level writes are undone with its savepoint.
    with db.group_transaction(engine):
        with pytest.raises(RuntimeError), db.writing(engine) as conn:
            TOUCH.run(conn, {"b_id": item_id, "b_who": "ana", "b_until": until})
            raise RuntimeError("undo this block only")
        with db.writing(engine) as conn:
            INSERT_EVENT.run(conn, {"at": until, "actor": "bo", "kind": "kept", "item_id": item_id,
                                    "queue": "support", "before": None, "after": None})
    with db.read_conn(engine) as conn:
        assert ROW.first(conn, {"b_id": item_id}).lease_holder is None
        kinds = conn.execute(select(events_t.c.kind).where(events_t.c.item_id == item_id)).scalars().all()
    assert "kept" in kinds
