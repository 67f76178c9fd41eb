"""The same (queue, external_id) posted at once from many threads or processes is
stored exactly once: the unique index decides, not a check-then-insert."""

import multiprocessing as mp
import threading

from sqlalchemy import func, select

from reviewqueue import ingest, store
from reviewqueue.models import Item

from .conftest import PG_URL, item


def count_items(engine) -> int:
    with store.read(engine) as tx, tx.session as s:
        return s.scalar(select(func.count()).select_from(Item))


def test_16_threads_same_external_id(engine, queue):
    barrier = threading.Barrier(16)
    results, errors = [], []

    def post():
        barrier.wait()
        try:
            results.append(ingest.submit(item(7), engine=engine))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count_items(engine) == 1
    assert len({r.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1


def test_threads_with_overlapping_big_batches(engine, queue):
    # Batches this big are prepared outside the write lock; the insert still decides.
    assert 150 >= ingest.PREPARE_OUTSIDE_LOCK
    barrier = threading.Barrier(6)
    runs, errors = [], []

    def post(k):
        barrier.wait()
        try:
            runs.append(ingest.submit_many([item(i) for i in range(k * 50, k * 50 + 150)], engine=engine))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count_items(engine) == 5 * 50 + 150
    assert [len(run) for run in runs] == [150] * 6
    seen: dict[str, list[bool]] = {}
    for run in runs:
        for r in run:
            seen.setdefault(r.id, []).append(r.duplicate)
    assert len(seen) == 5 * 50 + 150  # every external_id has one id, whoever posted it
    assert all(flags.count(False) == 1 for flags in seen.values())  # and was new for exactly one caller


def _post_from_process(url, barrier, out):
    from reviewqueue import ingest as pingest
    from reviewqueue import store as pdb

    engine = pdb.make_engine(url)
    barrier.wait()
    # Over ingest.PREPARE_OUTSIDE_LOCK: prepared before the write lock, checked inside it.
    r = pingest.submit_many([item(i) for i in range(150)], engine=engine)
    out.put([x.id for x in r])


def test_separate_processes_same_external_ids(engine, queue, db_url):
    ctx = mp.get_context("spawn")
    n = 6
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_post_from_process, args=(db_url, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    ids = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert count_items(engine) == 150
    assert all(run == ids[0] for run in ids)


assert PG_URL is None or PG_URL  # the process test runs on PostgreSQL when configured
