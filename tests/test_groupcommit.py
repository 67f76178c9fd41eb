"""Group commit: concurrent writes share transactions, and each caller still gets its
own result or error, as if it had written alone."""

import threading

import pytest
from sqlalchemy import text

from reviewqueue import events, ingest, review, store
from reviewqueue.errors import Conflict, QueueNotFound, ValidationFailed
from reviewqueue.groupcommit import GroupCommit

from .conftest import item


@pytest.fixture
def writes(engine):
    gc = GroupCommit(engine)
    yield gc
    gc.stop()


def _paused(writes):
    """Hold the group thread in a first operation until released, so what is submitted
    meanwhile lands in one group."""
    entered, release = threading.Event(), threading.Event()

    def hold():
        entered.set()
        release.wait(10)

    writes.submit(hold)
    entered.wait(10)
    return release


def test_concurrent_operations_share_a_transaction_and_keep_their_own_results(engine, queue, writes):
    release = _paused(writes)
    futures = [writes.submit(ingest.submit, item(i), engine=engine) for i in range(20)]
    release.set()
    results = [f.result(10) for f in futures]
    assert len({r.id for r in results}) == 20 and not any(r.duplicate for r in results)
    assert writes.groups == 2 and writes.operations == 21  # the holder's group, then all 20 together


def test_a_failing_operation_is_undone_alone(engine, queue, writes):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)

    def write_then_fail():
        with store.write(engine) as conn:
            events.record(conn, "test.should_vanish", "test", queue="support")
            raise RuntimeError("boom")

    release = _paused(writes)
    ok = writes.submit(review.decide, held.id, "ann", {"verdict": "approve"}, engine=engine)
    failing = writes.submit(write_then_fail)
    not_held = writes.submit(review.decide, held.id, "bob", {"verdict": "approve"}, engine=engine)
    later = writes.submit(ingest.submit, item(2), engine=engine)
    release.set()
    assert ok.result(10).verdict == "approve"
    with pytest.raises(RuntimeError):
        failing.result(10)
    with pytest.raises(Conflict):  # already decided by ann, in the same group
        not_held.result(10)
    assert later.result(10).duplicate is False
    with engine.connect() as conn:
        kinds = [k for (k,) in conn.exec_driver_sql("SELECT kind FROM events")]
    assert "test.should_vanish" not in kinds and "item.decided" in kinds


def test_submit_each_gives_each_caller_what_submit_would(engine, queue, writes):
    first = ingest.submit(item(1), engine=engine)
    requests = [
        (item(1), "app-a"),
        (item(2), "app-a"),
        (item(3, queue="ghost"), "app-a"),
        (item(2), "app-b"),
        (item(4), "app-b"),
        (item(5, confidence=float("nan")), "app-b"),
    ]
    results = ingest.submit_each(requests, engine=engine)
    assert results[0].duplicate and results[0].id == first.id
    assert not results[1].duplicate
    assert isinstance(results[2], QueueNotFound)
    assert results[3].duplicate and results[3].id == results[1].id  # same key, other caller: one item
    assert not results[4].duplicate
    assert isinstance(results[5], ValidationFailed)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 3  # ext-1, ext-2, ext-4


def test_run_combined_from_asyncio(engine, queue, writes):
    import asyncio
    from functools import partial

    submit_each = partial(ingest.submit_each, engine=engine)

    async def main():
        return await asyncio.gather(
            *[writes.run_combined(submit_each, (item(i), "app")) for i in range(30)],
            writes.run_combined(submit_each, (item(99, queue="ghost"), "app")),
            return_exceptions=True,
        )

    *ok, bad = asyncio.run(main())
    assert len({r.id for r in ok}) == 30 and isinstance(bad, QueueNotFound)
    assert writes.groups < 31


def test_a_database_error_in_one_operation_leaves_the_group_usable(engine, queue, writes):
    """On PostgreSQL a failed statement aborts the transaction until the savepoint is
    rolled back: the next operations of the group must still run and commit."""
    from sqlalchemy.exc import IntegrityError

    def break_a_constraint():
        with store.write(engine) as conn:
            events.record(conn, "test.should_vanish", "test", queue="support")
            conn.execute(text("INSERT INTO queues (name) VALUES (NULL)"))

    release = _paused(writes)
    before = writes.submit(ingest.submit, item(1), engine=engine)
    failing = writes.submit(break_a_constraint)
    after = writes.submit(ingest.submit, item(2), engine=engine)
    release.set()
    with pytest.raises(IntegrityError):
        failing.result(10)
    assert not before.result(10).duplicate and not after.result(10).duplicate
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 2
        kinds = [k for (k,) in conn.exec_driver_sql("SELECT kind FROM events")]
    assert "test.should_vanish" not in kinds
