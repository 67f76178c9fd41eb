"""Eight reviewers empty a 2,000-item queue in parallel: every item is decided exactly
once, by the one reviewer who claimed it, with no errors."""

import threading
from collections import Counter

from sqlalchemy import func, select

from reviewqueue import ingest, review, store
from reviewqueue.models import Event, Item, Review

from .conftest import item


def test_eight_reviewers_drain_queue_exactly_once(engine, queue):
    ingest.submit_many([item(i, confidence=(i % 79) / 100) for i in range(2000)], engine=engine)
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def reviewer(name: str):
        start.wait()
        try:
            while True:
                it = review.claim_next("support", name, engine=engine)
                if it is None:
                    return
                with lock:
                    claimed.setdefault(it.id, []).append(name)
                review.decide(it.id, name, {"verdict": "approve"}, engine=engine)
        except BaseException as exc:  # noqa: BLE001 - the test reports every error
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(f"r{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(claimed) == 2000
    assert all(len(holders) == 1 for holders in claimed.values()), "an item was handed out twice"
    with store.read(engine) as tx, tx.session as s:
        assert s.scalar(select(func.count()).select_from(Review)) == 2000
        per_item = s.execute(select(Review.item_id, func.count()).group_by(Review.item_id)).all()
        assert {n for _, n in per_item} == {1}
        statuses = Counter(s.scalars(select(Item.status)))
        assert statuses == {"approved": 2000}
        reviewers = {r.item_id: r.reviewer for r in s.scalars(select(Review))}
        assert all(reviewers[i] == holders[0] for i, holders in claimed.items())
        assert s.scalar(select(func.count()).select_from(Event).where(Event.kind == "item.claimed")) == 2000
    # Work was actually shared out.
    assert len({h[0] for h in claimed.values()}) >= 2
