"""Deadlines with a declared fallback (deadlines.py), with a controlled clock, on SQLite
and PostgreSQL: each on_deadline action, item deadlines over queue ones, near-deadline
claim order, the warning, a reviewer holding the item at its deadline, a late decision
stored, exported and sent, fallbacks kept out of agreement and evaluation data,
escalation keeping its history, and each fallback applied once under concurrency."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from reviewqueue import agreement, clock, deadlines, events, export, ingest, items, queues, review, webhooks
from reviewqueue.errors import Conflict, ValidationFailed

from .conftest import item


@pytest.fixture(autouse=True)
def _private_hooks(monkeypatch):
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")


def _queue(engine, name="refunds", **settings):
    base = {
        "threshold": 0.8,
        "audit_rate": 0.0,
        "lease_seconds": 600,
        "reject_reasons": ["incorrect", "late"],
    }
    return queues.create(name, base | settings, engine=engine)


def _post(engine, i, queue="refunds", **over):
    return ingest.submit(item(i, queue=queue, **over), engine=engine)


def _sent(engine, item_id=None) -> list[dict]:
    """Webhook bodies written for an item (or all), in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT body FROM webhook_deliveries ORDER BY id")
            if item_id is None
            else text("SELECT body FROM webhook_deliveries WHERE item_id = :i ORDER BY id"),
            {} if item_id is None else {"i": item_id},
        ).all()
    return [json.loads(r[0]) for r in rows]


def _kinds(engine, item_id) -> list[str]:
    return [e.kind for e in events.history(item_id, engine=engine)]


def test_queue_settings_are_checked(engine):
    _queue(engine, "refunds")
    with pytest.raises(ValidationFailed, match="deadline_reason"):
        queues.update("refunds", {"deadline_seconds": 60, "on_deadline": "reject"}, engine=engine)
    with pytest.raises(ValidationFailed, match="not one of the queue's reject reasons"):
        queues.update("refunds", {"on_deadline": "reject", "deadline_reason": "nope"}, engine=engine)
    with pytest.raises(ValidationFailed, match="no such queue"):
        queues.update("refunds", {"on_deadline": "escalate", "escalate_to": "seniors"}, engine=engine)
    with pytest.raises(ValidationFailed, match="itself"):
        queues.update("refunds", {"on_deadline": "escalate", "escalate_to": "refunds"}, engine=engine)
    with pytest.raises(ValidationFailed):
        queues.update("refunds", {"on_deadline": "explode"}, engine=engine)
    q = queues.update(
        "refunds",
        {"deadline_seconds": 60, "on_deadline": "reject", "deadline_reason": "late", "warn_seconds": 10},
        engine=engine,
    )
    assert (q.deadline_seconds, q.on_deadline, q.deadline_reason, q.warn_seconds) == (
        60,
        "reject",
        "late",
        10,
    )
    assert queues.update("refunds", {"deadline_seconds": 0}, engine=engine).deadline_seconds is None


def test_item_deadlines_over_queue_ones(engine, fake_clock):
    _queue(engine, deadline_seconds=3600)
    t0 = clock.now()
    by_queue = items.get(_post(engine, 1).id, engine=engine)
    own = items.get(_post(engine, 2, deadline_seconds=60).id, engine=engine)
    at = t0 + timedelta(minutes=5)
    absolute = items.get(_post(engine, 3, deadline=clock.iso(at)).id, engine=engine)
    auto = items.get(_post(engine, 4, confidence=0.95).id, engine=engine)
    assert abs((by_queue.deadline_at - t0).total_seconds() - 3600) < 30
    assert abs((own.deadline_at - t0).total_seconds() - 60) < 30
    assert absolute.deadline_at == at
    assert auto.status == "auto_accepted" and auto.deadline_at is None
    with pytest.raises(ValidationFailed, match="not both"):
        _post(engine, 5, deadline=clock.iso(at), deadline_seconds=5)
    with pytest.raises(ValidationFailed):
        _post(engine, 6, deadline_seconds=0)
    with pytest.raises(ValidationFailed, match="ISO 8601"):
        _post(engine, 7, deadline=1700000000)


def test_claims_take_the_soonest_due_first_within_a_priority(engine):
    _queue(engine)
    now = clock.now()
    none = _post(engine, 1, confidence=0.1).id
    hour = _post(engine, 2, confidence=0.5, deadline=clock.iso(now + timedelta(hours=1))).id
    soon = _post(engine, 3, confidence=0.7, deadline=clock.iso(now + timedelta(minutes=2))).id
    urgent = _post(engine, 4, confidence=0.6, priority=1).id
    order = [review.claim_next("refunds", f"r{n}", engine=engine).id for n in range(4)]
    assert order == [urgent, soon, hour, none]


@pytest.mark.parametrize("action", ["accept", "reject"])
def test_accept_and_reject_fallbacks_decide_as_system(engine, fake_clock, action):
    settings = {"deadline_seconds": 60, "on_deadline": action}
    if action == "reject":
        settings["deadline_reason"] = "late"
    _queue(engine, **settings)
    webhooks.add("refunds", "http://127.0.0.1:9/hook", engine=engine)
    posted = _post(engine, 1)
    assert deadlines.run_round(engine) is False and items.get(posted.id, engine=engine).status == "pending"
    fake_clock.advance(61)
    deadlines.run_round(engine)
    got = items.get(posted.id, engine=engine)
    assert got.status == "timed_out" and got.deadline_action == action
    d = got.decision
    assert d.source == "deadline" and d.reviewer == "system"
    assert d.verdict == ("approve" if action == "accept" else "reject")
    assert d.final_output == ("answer 1" if action == "accept" else None)
    assert d.reason == (None if action == "accept" else "late")
    assert got.reviews == []  # a fallback is never a review
    [event] = [e for e in events.history(posted.id, engine=engine) if e.kind == "item.deadline_passed"]
    assert event.actor == "system" and event.after["source"] == "deadline" and event.after["action"] == action
    [body] = _sent(engine, posted.id)
    assert body["type"] == "item.decided" and body["source"] == "deadline" and body["reviewer"] == "system"
    assert body["verdict"] == d.verdict and body["status"] == "timed_out"
    assert deadlines.apply(posted.id, engine=engine) is None  # once
    assert review.claim_next("refunds", "ann", engine=engine) is None  # it left the queue


def test_keep_marks_the_item_late_and_it_stays(engine, fake_clock):
    _queue(engine, deadline_seconds=30)
    posted = _post(engine, 1)
    fake_clock.advance(31)
    deadlines.run_round(engine)
    got = items.get(posted.id, engine=engine)
    assert got.status == "pending" and got.deadline_action == "keep" and got.decision is None
    assert "item.deadline_passed" in _kinds(engine, posted.id)
    deadlines.run_round(engine)
    assert _kinds(engine, posted.id).count("item.deadline_passed") == 1
    held = review.claim_next("refunds", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    assert items.get(posted.id, engine=engine).status == "approved"


def test_escalation_moves_the_item_with_its_history(engine, fake_clock):
    _queue(engine, "seniors", deadline_seconds=600)
    _queue(engine, deadline_seconds=60, on_deadline="escalate", escalate_to="seniors")
    webhooks.add("refunds", "http://127.0.0.1:9/hook", engine=engine)
    posted = _post(engine, 1)
    review.claim_next("refunds", "ann", engine=engine)
    fake_clock.advance(61)
    deadlines.run_round(engine)
    got = items.get(posted.id, engine=engine)
    assert got.queue == "seniors" and got.status == "pending" and got.lease_holder is None
    assert got.deadline_action == "escalate"
    assert abs((got.deadline_at - clock.now()).total_seconds() - 600) < 30  # the new queue's deadline
    kinds = _kinds(engine, posted.id)
    assert kinds[:2] == ["items.ingested", "item.claimed"] and kinds[-1] == "item.deadline_passed"
    passed = events.history(posted.id, engine=engine)[-1]
    assert passed.queue == "refunds" and passed.after["queue"] == "seniors"
    [body] = _sent(engine, posted.id)
    assert (
        body["type"] == "item.deadline_passed"
        and body["action"] == "escalate"
        and body["moved_to"] == "seniors"
    )
    assert review.claim_next("refunds", "bob", engine=engine) is None
    held = review.claim_next("seniors", "carol", engine=engine)
    assert held.id == posted.id
    review.decide(held.id, "carol", {"verdict": "approve"}, engine=engine)
    assert items.get(posted.id, engine=engine).status == "approved"


def test_escalation_that_cannot_happen_keeps_the_item(engine, fake_clock):
    _queue(engine, "seniors")
    _queue(engine, deadline_seconds=60, on_deadline="escalate", escalate_to="seniors")
    _post(engine, 1, queue="seniors")  # holds external_id ext-1 already
    posted = _post(engine, 1)
    fake_clock.advance(61)
    deadlines.run_round(engine)
    got = items.get(posted.id, engine=engine)
    assert got.queue == "refunds" and got.deadline_action == "keep"
    assert "already holds" in events.history(posted.id, engine=engine)[-1].after["why"]


def test_the_warning_goes_out_once_before_the_deadline(engine, fake_clock):
    _queue(engine, deadline_seconds=120, warn_seconds=30, on_deadline="accept")
    webhooks.add("refunds", "http://127.0.0.1:9/hook", engine=engine)
    posted = _post(engine, 1)
    deadlines.run_round(engine)
    assert _sent(engine) == []
    fake_clock.advance(95)
    deadlines.run_round(engine)
    deadlines.run_round(engine)
    [near] = _sent(engine, posted.id)
    assert near["type"] == "item.deadline_near" and 0 < near["seconds_left"] <= 30
    assert near["sequence"] == 1 and near["verdict"] is None
    fake_clock.advance(30)
    deadlines.run_round(engine)
    assert [b["type"] for b in _sent(engine, posted.id)] == ["item.deadline_near", "item.decided"]
    assert _sent(engine, posted.id)[1]["sequence"] == 2


def _overdue(engine, i, **over):
    """An item whose deadline passed a moment ago (exports read the database's real
    clock: these tests do not move time)."""
    return _post(engine, i, deadline=clock.iso(clock.now() - timedelta(seconds=1)), **over)


def test_a_reviewer_holding_the_item_is_told_and_a_late_decision_is_kept(engine, tmp_path):
    _queue(engine, on_deadline="accept")
    webhooks.add("refunds", "http://127.0.0.1:9/hook", engine=engine)
    posted = _overdue(engine, 1)
    held = review.claim_next("refunds", "ann", engine=engine)
    deadlines.run_round(engine)
    with pytest.raises(Conflict, match="deadline"):
        review.release(held.id, "ann", engine=engine)  # it is no longer theirs to give back
    with pytest.raises(Conflict, match="deadline"):
        review.renew(held.id, "ann", engine=engine)
    with pytest.raises(Conflict, match="deadline"):
        review.decide(held.id, "bob", {"verdict": "approve"}, engine=engine)  # never held it
    late = review.decide_item(held.id, "ann", {"verdict": "correct", "final_output": "fixed"}, engine=engine)
    assert late.status == "timed_out"
    assert late.decision.source == "deadline" and late.decision.verdict == "approve"  # what the app did
    assert late.late_decision.verdict == "correct" and late.late_decision.after_deadline
    assert late.late_decision.final_output == "fixed"
    with pytest.raises(Conflict):
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)  # once
    bodies = _sent(engine, posted.id)
    assert [b["type"] for b in bodies] == ["item.decided", "item.reviewed_after_deadline"]
    assert bodies[1]["after_deadline"] is True and bodies[1]["final_output"] == "fixed"
    assert bodies[1]["source"] == "reviewer" and bodies[1]["reviewer"] == "ann"
    time.sleep(1.2)  # exports take what has settled: a second before the database's now
    rows = {}
    for fmt in ("jsonl", "csv", "parquet"):
        [r] = export.export(tmp_path / fmt, fmt=fmt, queues=["refunds"], engine=engine)
        rows[fmt] = r
    lines = [json.loads(x) for x in open(rows["jsonl"].path, encoding="utf-8")]
    assert len(lines) == 1 and lines[0]["after_deadline"] is True and lines[0]["reference_output"] == "fixed"
    import pandas as pd

    assert pd.read_csv(rows["csv"].path)["after_deadline"].tolist() == [True]
    assert pd.read_parquet(rows["parquet"].path)["after_deadline"].tolist() == [True]


def test_fallbacks_are_never_evaluation_data_nor_reviews(engine, tmp_path):
    _queue(engine, on_deadline="reject", deadline_reason="late")
    human = _post(engine, 1, priority=1)
    _overdue(engine, 2)
    held = review.claim_next("refunds", "ann", engine=engine)
    assert held.id == human.id
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    deadlines.run_round(engine)
    time.sleep(1.2)  # lists and exports take what has settled
    assert sorted(i.status for i in items.poll(items.ItemFilter(queues=["refunds"]), engine=engine)[0]) == [
        "approved",
        "timed_out",
    ]
    [r] = export.export(tmp_path, fmt="jsonl", queues=["refunds"], engine=engine)
    lines = [json.loads(x) for x in open(r.path, encoding="utf-8")]
    assert [x["item_id"] for x in lines] == [human.id] and lines[0]["after_deadline"] is False
    rep = agreement.report("refunds", engine=engine)
    assert [s.reviewer for s in rep.reviewers] == ["ann"]
    from reviewqueue import quality

    q = quality.report("refunds", engine=engine)
    assert q.deadline_fallbacks == 1 and q.deadline_fallback_share == pytest.approx(0.5)


def test_each_fallback_is_applied_once_however_many_try(engine, fake_clock):
    _queue(engine, deadline_seconds=10, on_deadline="accept")
    webhooks.add("refunds", "http://127.0.0.1:9/hook", engine=engine)
    ids = [r.id for r in ingest.submit_many([item(i, queue="refunds") for i in range(30)], engine=engine)]
    fake_clock.advance(11)
    done: list = []
    start = threading.Barrier(4)

    def race():
        start.wait()
        done.extend(a for a in (deadlines.apply(i, engine=engine) for i in ids) if a)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 30
    with engine.connect() as conn:
        per_item = conn.execute(
            text("SELECT item_id, count(*) FROM webhook_deliveries GROUP BY item_id")
        ).all()
        passed = conn.execute(
            text("SELECT count(*) FROM events WHERE kind = 'item.deadline_passed'")
        ).scalar()
    assert len(per_item) == 30 and all(n == 1 for _, n in per_item) and passed == 30


def test_a_human_decision_just_before_the_deadline_wins(engine, fake_clock):
    _queue(engine, deadline_seconds=60, on_deadline="reject", deadline_reason="late")
    posted = _post(engine, 1)
    held = review.claim_next("refunds", "ann", engine=engine)
    fake_clock.advance(59)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(2)
    deadlines.run_round(engine)
    got = items.get(posted.id, engine=engine)
    assert got.status == "approved" and got.decision.source == "reviewer" and got.deadline_action is None
