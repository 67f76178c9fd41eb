"""The waiting gate: GET /v1/items/{id}?wait= answers as soon as the item is final (one
notifier per process: LISTEN/NOTIFY on PostgreSQL, one batched poll on SQLite), and
``Client.review`` / ``AsyncClient.review`` return a human verdict, the queue's deadline
fallback, or the client's own fallback when it stops waiting first."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from reviewqueue import deadlines, ingest, jobs, queues, review, waiting
from reviewqueue.client import AsyncClient, Client

from .conftest import item


def _decide_soon(engine, queue, delay, verdict=None):
    """A reviewer who claims and decides after ``delay`` seconds, on a thread."""
    done = {}

    def work():
        time.sleep(delay)
        held = review.claim_next(queue, "ann", engine=engine)
        review.decide(
            held.id, "ann", verdict or {"verdict": "correct", "final_output": "fixed"}, engine=engine
        )
        done["at"] = time.monotonic()

    thread = threading.Thread(target=work)
    thread.start()
    return thread, done


def _token(make_token):
    return make_token("admin", user="rita")["Authorization"].split()[1]


def test_wait_answers_when_the_item_is_decided(live_server, queue, make_token, engine):
    headers = {"Authorization": f"Bearer {_token(make_token)}"}
    posted = ingest.submit(item(1), engine=engine)
    thread, done = _decide_soon(engine, "support", 0.5)
    start = time.monotonic()
    resp = httpx.get(f"{live_server}/v1/items/{posted.id}", params={"wait": 30}, headers=headers, timeout=40)
    answered = time.monotonic()
    thread.join()
    assert resp.status_code == 200 and resp.json()["status"] == "corrected"
    # Woken by the decision, not by the end of the wait (30 s).
    assert answered - start < 15 and answered >= done["at"]


def test_wait_ends_with_the_item_as_it_is(live_server, queue, make_token, engine):
    headers = {"Authorization": f"Bearer {_token(make_token)}"}
    posted = ingest.submit(item(1), engine=engine)
    start = time.monotonic()
    resp = httpx.get(f"{live_server}/v1/items/{posted.id}", params={"wait": 0.6}, headers=headers, timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] == "pending"
    assert time.monotonic() - start >= 0.6
    final = ingest.submit(item(2, confidence=0.99), engine=engine)  # auto-accepted: at once
    resp = httpx.get(f"{live_server}/v1/items/{final.id}", params={"wait": 30}, headers=headers, timeout=10)
    assert resp.json()["status"] == "auto_accepted"


@pytest.mark.parametrize("wait", ["61", "-1", "nan", "soon"])
def test_wait_out_of_range_is_refused(api, queue, make_token, engine, wait):
    posted = ingest.submit(item(1), engine=engine)
    resp = api.get(f"/v1/items/{posted.id}", params={"wait": wait}, headers=make_token("read"))
    assert resp.status_code == 422 and "wait" in str(resp.json()["detail"])


def test_wait_on_an_unknown_item_or_queue_not_allowed(api, queue, make_token, engine):
    posted = ingest.submit(item(1), engine=engine)
    assert api.get("/v1/items/nope", params={"wait": 5}, headers=make_token("read")).status_code == 404
    queues.create("elsewhere", engine=engine)
    other = make_token("read", queues=["elsewhere"])
    assert api.get(f"/v1/items/{posted.id}", params={"wait": 5}, headers=other).status_code == 403


def test_client_review_returns_the_human_verdict(live_server, queue, make_token, engine):
    thread, _ = _decide_soon(engine, "support", 0.5)
    with Client(live_server, _token(make_token)) as rq:
        answer = rq.review(item(1), timeout=30, fallback="accept")
    thread.join()
    assert answer.source == "reviewer" and answer.verdict == "correct" and answer.output == "fixed"
    assert answer.reviewer == "ann" and answer.approved


def test_client_review_returns_the_deadline_fallback(live_server, engine, make_token):
    queues.create(
        "refunds",
        {"audit_rate": 0.0, "deadline_seconds": 1, "on_deadline": "reject", "reject_reasons": ["late"]}
        | {"deadline_reason": "late"},
        engine=engine,
    )
    runner = jobs.Runner([deadlines.deadline_job()], engine).start()
    try:
        with Client(live_server, _token(make_token)) as rq:
            answer = rq.review(item(1, queue="refunds"), timeout=30, fallback="accept")
    finally:
        runner.stop()
    assert answer.source == "deadline" and answer.verdict == "reject" and answer.reason == "late"
    assert answer.reviewer == "system" and not answer.approved and answer.item.status == "timed_out"


def test_client_review_falls_back_when_it_stops_waiting(live_server, queue, make_token, engine):
    with Client(live_server, _token(make_token)) as rq:
        start = time.monotonic()
        answer = rq.review(item(1, output="draft"), timeout=1, fallback="accept")
        assert 1 <= time.monotonic() - start < 10
        assert answer.source == "timeout" and answer.verdict == "approve" and answer.output == "draft"
        again = rq.review(item(1, output="draft"), timeout=0.2)  # same external_id: same item
        assert again.item_id == answer.item_id and again.source == "timeout" and again.verdict == "reject"
        with pytest.raises(ValueError):
            rq.review(item(2), timeout=1, fallback="maybe")


def test_async_client_review(live_server, queue, make_token, engine):
    token = _token(make_token)
    thread, _ = _decide_soon(engine, "support", 0.5, {"verdict": "approve"})

    async def main():
        async with AsyncClient(live_server, token) as rq:
            human = await rq.review(item(1), timeout=30)
            late = await rq.review(item(2), timeout=0.5, fallback="reject")
            return human, late

    human, late = asyncio.run(main())
    thread.join()
    assert human.source == "reviewer" and human.verdict == "approve"
    assert late.source == "timeout" and late.verdict == "reject"


def test_notifier_wakes_many_waiters_with_one_query_per_round(engine, queue):
    """A thousand waiters: each woken by its own item's decision; the notifier asks the
    database once per round for all of them (SQLite), or is told (PostgreSQL)."""
    ids = [r.id for r in ingest.submit_many([item(i) for i in range(1000)], engine=engine)]
    notifier = waiting.Notifier(engine).start()
    asked = []
    real = waiting.store.final_among

    def counting(eng, wanted):
        asked.append(len(wanted))
        return real(eng, wanted)

    waiting.store.final_among = counting
    try:

        async def main():
            async def one(item_id):
                with notifier.waiter(item_id) as told:
                    return await waiting.until(told, 20)

            tasks = [asyncio.create_task(one(i)) for i in ids]
            await asyncio.sleep(0.3)
            assert notifier.count() == 1000
            await asyncio.to_thread(_decide_all, engine, 1000)
            return await asyncio.gather(*tasks)

        woken = asyncio.run(main())
    finally:
        waiting.store.final_among = real
        notifier.stop()
    assert all(woken) and notifier.count() == 0
    if not notifier.listening:
        assert asked and max(asked) <= 1000  # one look at all of them, never one per waiter


def _decide_all(engine, n):
    for _ in range(n):
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
