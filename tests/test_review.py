import pytest
from sqlalchemy import select

from reviewqueue import events, ingest, items, review, store
from reviewqueue.errors import Conflict, LeaseLost, ValidationFailed
from reviewqueue.models import Event, Review

from .conftest import item


def test_claim_order_priority_then_confidence_then_age(engine, queue):
    r_old = ingest.submit(item(1, confidence=0.5), engine=engine)
    r_new = ingest.submit(item(2, confidence=0.5), engine=engine)
    r_low = ingest.submit(item(3, confidence=0.1), engine=engine)
    r_urgent = ingest.submit(item(4, confidence=0.7, priority=10), engine=engine)
    order = []
    for n in range(4):
        it = review.claim_next("support", f"rev{n}", engine=engine)
        order.append(it.id)
    assert order == [r_urgent.id, r_low.id, r_old.id, r_new.id]
    assert review.claim_next("support", "rev9", engine=engine) is None


def test_auto_accepted_items_are_never_claimed(engine, queue):
    ingest.submit(item(1, confidence=0.95), engine=engine)
    assert review.claim_next("support", "ann", engine=engine) is None


def test_same_reviewer_gets_held_item_back(engine, queue):
    ingest.submit_many([item(i) for i in range(3)], engine=engine)
    first = review.claim_next("support", "ann", engine=engine)
    again = review.claim_next("support", "ann", engine=engine)
    other = review.claim_next("support", "bob", engine=engine)
    assert again.id == first.id and again.lease_expires_at >= first.lease_expires_at
    assert other.id != first.id


def test_expired_lease_returns_item_and_late_decision_is_refused(engine, queue, fake_clock):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    fake_clock.advance(61)  # the queue's lease is 60 s
    taken = review.claim_next("support", "bob", engine=engine)
    assert taken.id == held.id and taken.lease_holder == "bob"
    with pytest.raises(LeaseLost) as e:
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    assert "bob" in str(e.value)
    review.decide(held.id, "bob", {"verdict": "approve"}, engine=engine)
    kinds = [ev.kind for ev in events.history(held.id, engine=engine)]
    assert kinds == ["items.ingested", "item.claimed", "item.lease_expired", "item.claimed", "item.decided"]


def test_expired_but_untouched_lease_can_still_be_decided(engine, queue, fake_clock):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    fake_clock.advance(120)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    assert items.get(held.id, engine=engine).status == "approved"


def test_renew_extends_and_release_gives_back(engine, queue, fake_clock):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    fake_clock.advance(50)
    renewed = review.renew(held.id, "ann", engine=engine)
    assert renewed.lease_expires_at > held.lease_expires_at
    fake_clock.advance(50)  # past the first lease, inside the renewed one
    assert review.claim_next("support", "bob", engine=engine) is None
    review.release(held.id, "ann", engine=engine)
    assert review.claim_next("support", "bob", engine=engine).id == held.id
    with pytest.raises(LeaseLost):
        review.release(held.id, "ann", engine=engine)


def test_only_the_holder_may_decide(engine, queue):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    with pytest.raises(LeaseLost):
        review.decide(held.id, "bob", {"verdict": "approve"}, engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    with pytest.raises(Conflict) as e:
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    assert "already decided" in str(e.value)


def test_unclaimed_item_cannot_be_decided(engine, queue):
    r = ingest.submit(item(1), engine=engine)
    with pytest.raises(LeaseLost):
        review.decide(r.id, "ann", {"verdict": "approve"}, engine=engine)


def test_approve_keeps_output(engine, queue):
    ingest.submit(item(1, output="fine answer"), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    rv = review.decide(
        held.id, "ann", {"verdict": "approve", "comment": "ok", "seconds_spent": 4.5}, engine=engine
    )
    assert rv.final_output == "fine answer" and rv.seconds_spent == 4.5
    got = items.get(held.id, engine=engine)
    assert got.status == "approved"
    assert got.decision.verdict == "approve" and got.decision.reviewer == "ann"
    with pytest.raises(ValidationFailed):
        ingest.submit(item(2), engine=engine)
        h2 = review.claim_next("support", "ann", engine=engine)
        review.decide(h2.id, "ann", {"verdict": "approve", "final_output": "changed"}, engine=engine)


def test_correct_needs_a_real_change(engine, queue):
    ingest.submit(item(1, output="wrong answer"), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    for bad in (
        {"verdict": "correct"},
        {"verdict": "correct", "final_output": "wrong answer"},
        {"verdict": "correct", "final_output": "   "},
    ):
        with pytest.raises(ValidationFailed):
            review.decide(held.id, "ann", bad, engine=engine)
    rv = review.decide(held.id, "ann", {"verdict": "correct", "final_output": "right answer"}, engine=engine)
    assert rv.final_output == "right answer"
    assert items.get(held.id, engine=engine).status == "corrected"


def test_correct_label_in_classification_queue(engine, label_queue):
    ingest.submit(
        {
            "queue": "tickets",
            "input": "app crashes",
            "output": "billing",
            "confidence": 0.4,
            "predicted_label": "billing",
        },
        engine=engine,
    )
    held = review.claim_next("tickets", "ann", engine=engine)
    with pytest.raises(ValidationFailed) as e:
        review.decide(held.id, "ann", {"verdict": "correct", "final_label": "weather"}, engine=engine)
    assert "not one of the queue's labels" in str(e.value)
    rv = review.decide(held.id, "ann", {"verdict": "correct", "final_label": "bug"}, engine=engine)
    assert (rv.final_label, rv.final_output) == ("bug", "bug")  # the output is the label: both corrected


def test_reject_needs_a_reason_from_the_list(engine, label_queue):
    ingest.submit({"queue": "tickets", "input": "???", "output": "other", "confidence": 0.2}, engine=engine)
    held = review.claim_next("tickets", "ann", engine=engine)
    with pytest.raises(ValidationFailed) as e:
        review.decide(held.id, "ann", {"verdict": "reject"}, engine=engine)
    assert "ambiguous" in str(e.value)
    with pytest.raises(ValidationFailed):
        review.decide(held.id, "ann", {"verdict": "reject", "reason": "boring"}, engine=engine)
    with pytest.raises(ValidationFailed):
        review.decide(held.id, "ann", {"verdict": "maybe"}, engine=engine)
    rv = review.decide(
        held.id, "ann", {"verdict": "reject", "reason": "spam", "comment": "bot"}, engine=engine
    )
    assert rv.final_output is None and rv.reason == "spam"


def test_decision_writes_review_and_event_together(engine, queue):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    rv = review.decide(held.id, "ann", {"verdict": "correct", "final_output": "better"}, engine=engine)
    with store.read(engine) as tx, tx.session as s:
        ev = s.scalars(select(Event).where(Event.kind == "item.decided")).one()
        assert ev.actor == "ann" and ev.item_id == held.id
        assert ev.before == {"status": "in_review"}
        assert ev.after == {"status": "corrected", "verdict": "correct", "review_id": rv.id}


def test_failed_decision_changes_nothing(engine, queue):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    with pytest.raises(ValidationFailed):
        review.decide(held.id, "ann", {"verdict": "reject", "reason": "nope"}, engine=engine)
    with store.read(engine) as tx, tx.session as s:
        assert s.scalars(select(Review)).all() == []
    assert items.get(held.id, engine=engine).status == "in_review"


def test_undo_within_window(engine, queue, fake_clock):
    ingest.submit_many([item(1), item(2)], engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    rv = review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    back = review.undo(rv.id, "ann", engine=engine)
    assert back.status == "in_review" and back.lease_holder == "ann"
    assert items.get(held.id, engine=engine).decision is None
    with store.read(engine) as tx, tx.session as s:
        assert s.get(Review, rv.id).undone_at is not None  # kept, marked
    with pytest.raises(Conflict):
        review.undo(rv.id, "ann", engine=engine)
    rv2 = review.decide(held.id, "ann", {"verdict": "correct", "final_output": "new"}, engine=engine)
    with pytest.raises(Conflict):
        review.undo(rv2.id, "bob", engine=engine)
    fake_clock.advance(31)
    with pytest.raises(Conflict) as e:
        review.undo(rv2.id, "ann", engine=engine)
    assert "seconds" in str(e.value)
    assert items.get(held.id, engine=engine).decision.final_output == "new"


def test_claim_can_pass_over_skipped_items(engine, queue):
    a = ingest.submit(item(1, confidence=0.1), engine=engine)
    b = ingest.submit(item(2, confidence=0.2), engine=engine)
    assert review.claim_next("support", "ann", exclude=[a.id], engine=engine).id == b.id
    review.release(b.id, "ann", engine=engine)
    assert review.claim_next("support", "ann", exclude=[a.id, b.id], engine=engine) is None
