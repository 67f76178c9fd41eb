"""Several reviewers per item: claims, consensus, disputes, adjudication, undo and
assignment, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from reviewqueue import consensus, ingest, items, queues, review, store, users, webhooks
from reviewqueue.errors import Conflict, NotAssigned, PermissionDenied, ValidationFailed
from reviewqueue.models import Event, Item, Review, WebhookDelivery

from .conftest import item

APPROVE = {"verdict": "approve"}
REJECT = {"verdict": "reject", "reason": "incorrect"}


@pytest.fixture
def panel(engine):
    """A queue that needs three decisions per item, and a lead."""
    queues.create(
        "panel",
        {
            "threshold": 0.8,
            "audit_rate": 0.0,
            "reviews_required": 3,
            "reject_reasons": ["incorrect", "harmful"],
        },
        engine=engine,
    )
    users.add("lena", role="lead", password="lena-password", engine=engine)
    return "panel"


def post(engine, queue: str, n: int = 1, **extra) -> list[str]:
    results = ingest.submit_many([item(i, queue=queue, **extra) for i in range(n)], engine=engine)
    return [r.id for r in results]


def decide_as(engine, queue: str, reviewer: str, decision: dict, item_id: str | None = None):
    held = review.claim_next(queue, reviewer, engine=engine)
    assert held is not None and (item_id is None or held.id == item_id)
    return review.decide(held.id, reviewer, decision, engine=engine)


def test_three_agreeing_reviewers_make_one_final_decision(engine, panel):
    webhooks.add(panel, "http://93.184.215.14/hook", engine=engine)
    [item_id] = post(engine, panel)
    for n, who in enumerate(("ann", "bob")):
        decide_as(engine, panel, who, APPROVE, item_id)
        got = items.get(item_id, engine=engine)
        assert got.status == "pending" and got.reviews_done == n + 1 and got.decision is None
    # Someone who decided it is never offered it again.
    assert review.claim_next(panel, "ann", engine=engine) is None
    decide_as(engine, panel, "cy", APPROVE, item_id)
    got = items.get(item_id, engine=engine)
    assert got.status == "approved" and got.decision.reviewer == "ann" and got.agreement == 1.0
    assert [r.reviewer for r in got.reviews] == ["ann", "bob", "cy"]
    with store.read(engine) as tx:
        kinds = list(
            tx.session.scalars(select(Event.kind).where(Event.item_id == item_id).order_by(Event.id))
        )
        sent = list(
            tx.session.scalars(select(WebhookDelivery.kind).where(WebhookDelivery.item_id == item_id))
        )
    assert kinds.count("item.reviewed") == 2 and kinds.count("item.decided") == 1
    assert sent == ["item.decided"]  # the app hears once, of the final decision


def test_a_majority_decides_and_agreement_says_how_far(engine, panel):
    [item_id] = post(engine, panel)
    decide_as(engine, panel, "ann", REJECT)
    decide_as(engine, panel, "bob", APPROVE)
    decide_as(engine, panel, "cy", {"verdict": "reject", "reason": "harmful"})
    got = items.get(item_id, engine=engine)
    assert got.status == "rejected" and got.decision.reviewer == "ann" and got.decision.reason == "incorrect"
    assert got.agreement == pytest.approx(2 / 3)


def test_unanimous_queues_send_any_disagreement_to_a_lead(engine, panel):
    queues.update(panel, {"consensus": "unanimous"}, engine=engine)
    [item_id] = post(engine, panel)
    for who, decision in (("ann", APPROVE), ("bob", APPROVE), ("cy", REJECT)):
        decide_as(engine, panel, who, decision)
    got = items.get(item_id, engine=engine)
    assert got.status == "disputed" and got.decision is None and got.reviews_done == 3
    assert review.claim_next(panel, "dan", engine=engine) is None  # disputed items are not claimable
    assert [d.id for d in review.disputes(panel, engine=engine)] == [item_id]
    with pytest.raises(PermissionDenied):
        review.adjudicate(item_id, "ann", APPROVE, engine=engine)  # reviewers do not adjudicate
    users.add("ann", password="ann-password-1", engine=engine)
    with pytest.raises(PermissionDenied):
        review.adjudicate(item_id, "ann", APPROVE, engine=engine)
    reject_id = next(r.id for r in got.reviews if r.reviewer == "cy")
    done = review.adjudicate(item_id, "lena", pick=reject_id, engine=engine)
    assert (
        done.status == "rejected"
        and done.decision.reviewer == "lena"
        and done.agreement == pytest.approx(1 / 3)
    )
    assert [r.adjudication for r in done.reviews] == [False, False, False, True]
    with pytest.raises(Conflict):
        review.adjudicate(item_id, "lena", APPROVE, engine=engine)  # settled already
    assert review.disputes(panel, engine=engine) == []


def test_different_corrections_need_a_chosen_text(engine, panel):
    queues.update(panel, {"reviews_required": 2}, engine=engine)
    first, second = post(engine, panel, 2, output="the refund takes five days")
    for who in ("ann", "bob"):  # the same text, spaced differently: they agree
        held = review.claim_next(panel, who, engine=engine)
        text = "the refund takes  seven days" if who == "ann" else "the refund takes seven days "
        review.decide(held.id, who, {"verdict": "correct", "final_output": text}, engine=engine)
    done = items.get(held.id, engine=engine)
    assert done.status == "corrected" and done.decision.final_output == "the refund takes  seven days"
    other = first if held.id == second else second
    for who, text in (("ann", "seven days"), ("bob", "ten days")):
        decide_as(engine, panel, who, {"verdict": "correct", "final_output": text}, other)
    assert items.get(other, engine=engine).status == "disputed"
    done = review.adjudicate(
        other, "lena", {"verdict": "correct", "final_output": "7 business days"}, engine=engine
    )
    assert done.decision.final_output == "7 business days" and done.agreement == 1.0  # both said "correct"


def test_labels_must_match_to_agree(engine):
    queues.create(
        "tickets",
        {"threshold": 0.8, "audit_rate": 0.0, "labels": ["billing", "bug"], "reviews_required": 2},
        engine=engine,
    )
    [item_id] = post(engine, "tickets", output="billing", predicted_label="billing")
    decide_as(engine, "tickets", "ann", {"verdict": "correct", "final_label": "bug"})
    decide_as(engine, "tickets", "bob", APPROVE)
    assert items.get(item_id, engine=engine).status == "disputed"  # a tie under majority


def test_consensus_rules_alone():
    class D:
        def __init__(self, verdict, label=None, output=None, reason=None):
            self.verdict, self.final_label, self.final_output, self.reason = verdict, label, output, reason

    a, r = D("approve"), D("reject", reason="x")
    assert consensus.settle([a, a, r], "majority", False).agreement == pytest.approx(2 / 3)
    assert consensus.settle([a, a, r], "unanimous", False).final is None
    assert consensus.settle([a, r], "majority", False).why == "1 approve, 1 reject"
    assert consensus.settle([D("correct", "bug"), D("correct", "billing")], "majority", True).final is None
    json_a, json_b = D("correct", output={"a": 1, "b": 2}), D("correct", output={"b": 2, "a": 1})
    assert consensus.settle([json_a, json_b], "unanimous", False).final is json_a


def test_undo_works_until_the_item_is_final(engine, panel):
    [item_id] = post(engine, panel)
    mine = decide_as(engine, panel, "ann", APPROVE)
    back = review.undo(mine.id, "ann", engine=engine)
    assert back.status == "in_review" and back.lease_holder == "ann" and back.reviews_done == 0
    mine = review.decide(item_id, "ann", REJECT, engine=engine)
    held = review.claim_next(panel, "bob", engine=engine)
    with pytest.raises(Conflict, match="bob is reviewing"):
        review.undo(mine.id, "ann", engine=engine)
    review.decide(held.id, "bob", APPROVE, engine=engine)
    last = decide_as(engine, panel, "cy", APPROVE)
    assert items.get(item_id, engine=engine).status == "approved"
    for who, rv in (("ann", mine), ("cy", last)):
        with pytest.raises(Conflict, match="final"):
            review.undo(rv.id, who, engine=engine)


def test_only_assigned_reviewers_get_items(engine, panel, api, make_token):
    for name in ("ann", "bob"):
        users.add(name, role="reviewer", engine=engine)
    queues.update(panel, {"reviewers": ["ann", "bob"]}, engine=engine)
    post(engine, panel)
    with pytest.raises(NotAssigned):
        review.claim_next(panel, "rita", engine=engine)
    assert review.claim_next(panel, "ann", engine=engine) is not None
    r = api.post(f"/v1/queues/{panel}/claim", headers=make_token("review"))  # rita's token
    assert r.status_code == 403 and "not one of the reviewers" in r.json()["detail"]
    with pytest.raises(ValidationFailed):
        queues.update(panel, {"reviews_required": 6}, engine=engine)


def _could_still_need(engine, queue: str, name: str) -> bool:
    """Is any item of ``queue`` still waiting for decisions, without one of ``name``'s?"""
    with store.read(engine) as tx:
        mine = select(Review.item_id).where(Review.reviewer == name, Review.undone_at.is_(None))
        return (
            tx.session.scalar(
                select(func.count())
                .select_from(Item)
                .where(Item.queue == queue, Item.status.in_(["pending", "in_review"]), Item.id.not_in(mine))
            )
            > 0
        )


def test_eight_reviewers_three_decisions_each_item(engine, panel):
    """8 reviewers drain 500 items needing 3 decisions: every item ends with exactly 3
    decisions from 3 distinct reviewers (or a lead's adjudication after them), exactly one
    final decision and one webhook delivery, nobody is handed an item twice, no errors."""
    webhooks.add(panel, "http://93.184.215.14/hook", engine=engine)
    ingest.submit_many([item(i, queue=panel, confidence=(i % 79) / 100) for i in range(500)], engine=engine)
    handed: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def reviewer(name: str, n: int):
        start.wait()
        try:
            k = 0
            while True:
                held = review.claim_next(panel, name, engine=engine)
                if held is None:
                    # Nothing free for me now; an item another reviewer holds may still
                    # come back needing my decision. Stop when none can.
                    if not _could_still_need(engine, panel, name):
                        break
                    time.sleep(0.005)
                    continue
                with lock:
                    handed[(held.id, name)] += 1
                k += 1
                decision = REJECT if (k + n) % 5 == 0 else APPROVE  # some disagreement
                review.decide(held.id, name, decision, engine=engine)
        except BaseException as exc:  # noqa: BLE001 - the test reports every error
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(f"r{n}", n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert max(handed.values()) == 1, "an item was handed to the same reviewer twice"
    for disputed in review.disputes(panel, limit=1000, engine=engine):
        review.adjudicate(disputed.id, "lena", APPROVE, engine=engine)
    with store.read(engine) as tx, tx.session as s:
        per_item = s.execute(
            select(Review.item_id, func.count(), func.count(func.distinct(Review.reviewer)))
            .where(Review.adjudication.is_(False))
            .group_by(Review.item_id)
        ).all()
        assert len(per_item) == 500 and {(n, d) for _, n, d in per_item} == {(3, 3)}
        assert Counter(s.scalars(select(Item.status))).keys() <= {"approved", "rejected"}
        assert s.scalar(select(func.count()).select_from(Item).where(Item.final_review_id.is_(None))) == 0
        decided = s.execute(
            select(Event.item_id, func.count()).where(Event.kind == "item.decided").group_by(Event.item_id)
        ).all()
        assert len(decided) == 500 and {n for _, n in decided} == {1}
        sent = s.execute(
            select(WebhookDelivery.item_id, func.count())
            .where(WebhookDelivery.kind == "item.decided")
            .group_by(WebhookDelivery.item_id)
        ).all()
        assert len(sent) == 500 and {n for _, n in sent} == {1}
    assert len({name for _, name in handed}) == 8  # the work was shared out
