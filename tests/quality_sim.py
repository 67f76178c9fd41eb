"""Simulations with known ground truth for the quality report (tests/test_quality*.py).

Each simulation draws outputs whose true chance of being right is a known function of
confidence, routes them through the real ingest (threshold, audit sample), decides the
queued ones according to the truth through the real claim and decide functions, and
compares the report with the truth computed over *all* items, the unreviewed ones
included (which only the simulation knows).
"""

from __future__ import annotations

import random

from reviewqueue import claims, decisions, ingest, queues

CALIBRATION = {
    "calibrated": lambda c: c,
    "over": lambda c: c**3,  # says 0.9, right 73% of the time
    "under": lambda c: min(1.0, 0.3 + c),  # says 0.7, always right
}


def simulate(
    engine,
    queue: str,
    seed: int,
    *,
    n: int = 1000,
    kind: str = "over",
    threshold: float = 0.8,
    audit_rate: float = 0.1,
    low: float = 0.5,
    version: str = "v1",
    create: bool = True,
    decide: bool = True,
) -> dict[str, tuple[float, bool, str]]:
    """{external_id: (confidence, right, version)} of n new items in ``queue``."""
    rng = random.Random(seed)
    if create:
        queues.create(queue, {"threshold": threshold, "audit_rate": audit_rate}, engine=engine)
    truth, batch = {}, []
    for i in range(n):
        c = rng.uniform(low, 1.0)
        key = f"{version}-{seed}-{i}"
        truth[key] = (c, rng.random() < CALIBRATION[kind](c), version)
        batch.append(
            {
                "queue": queue,
                "external_id": key,
                "input": "q",
                "output": "a",
                "confidence": c,
                "model_version": version,
            }
        )
    ingest.submit_many(batch, engine=engine)
    if decide:
        decide_all(engine, queue, truth)
    return truth


def decide_all(engine, queue: str, truth: dict) -> None:
    while (held := claims.claim_next(queue, "sim", engine=engine)) is not None:
        right = truth[held.external_id][1]
        decisions.decide(
            held.id,
            "sim",
            {"verdict": "approve"} if right else {"verdict": "reject", "reason": "incorrect"},
            engine=engine,
        )


def true_error(truth: dict, keep=lambda c: True) -> float:
    wrong = [not right for c, right, _ in truth.values() if keep(c)]
    return sum(wrong) / len(wrong)


def routes(engine, queue: str) -> dict[str, str]:
    """{external_id: route} as ingest stored them."""
    from sqlalchemy import select

    from reviewqueue import store
    from reviewqueue.models import Item

    with store.read(engine) as tx:
        return dict(tx.execute(select(Item.external_id, Item.route).where(Item.queue == queue)).all())


def auto_accepted_truth(engine, queue: str, truth: dict) -> float:
    wrong = [not truth[k][1] for k, route in routes(engine, queue).items() if route == "auto_accepted"]
    return sum(wrong) / len(wrong)
