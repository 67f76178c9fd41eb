"""How good is each field of a structured output? (structured.py)

From the final decisions on a queue's structured items (approvals and corrections; a
rejection says the whole output was unusable, not which field): a field a reviewer saw
and did not change was right, one they changed was wrong. Per field path:

- ``accuracy``: the share right among every reviewed occurrence, with a Jeffreys
  interval;
- ``auto_accepted_error``: the error among occurrences whose confidence was at or above
  the field's threshold (what goes out unreviewed when the whole item is confident),
  estimated from the reviewed items where the field was that confident;
- ``reliability``: accuracy by confidence band (tenths);
- ``recommendation``: the lowest threshold whose confident occurrences have a Jeffreys
  upper bound of error within ``target_error``, when a target is given.

The estimate of the auto-accepted error assumes a field's correctness does not depend
on why its item was reviewed (another field flagged, or the audit sample); the
simulation in tests/test_field_quality.py checks the intervals' coverage.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select

from . import queues, store
from .models import Item, Review
from .quality import Estimate
from .vocab import Status, Verdict

CANDIDATES = [round(0.5 + 0.01 * k, 2) for k in range(50)]


class Bin(BaseModel):
    low: float
    high: float
    n: int
    accuracy: float | None


class FieldQuality(BaseModel):
    path: str
    threshold: float
    reviewed: int
    changed: int
    accuracy: Estimate
    auto_accepted_error: Estimate
    reliability: list[Bin] = Field(default_factory=list)
    recommendation: float | None = None
    recommendation_reason: str | None = None


def _interval(wrong: int, n: int, level: float, rng) -> Estimate:
    if n == 0:
        return Estimate(reason="no reviewed occurrences")
    draws = rng.beta(wrong + 0.5, n - wrong + 0.5, size=4000)
    tail = (1 - level) / 2
    return Estimate(
        estimate=wrong / n,
        low=float(np.quantile(draws, tail)),
        high=float(np.quantile(draws, 1 - tail)),
        evidence=n,
    )


def _upper(wrong: int, n: int, level: float, rng) -> float:
    return float(np.quantile(rng.beta(wrong + 0.5, n - wrong + 0.5, size=4000), level))


def report(queue: str, *, target_error: float | None = None, confidence_level: float = 0.95, engine=None):
    """One :class:`FieldQuality` per field path seen in the queue's decided items."""
    engine = engine or store.get_engine()
    q = queues.get(queue, engine=engine)
    stmt = (
        select(Item.field_confidence, Review.changed_fields)
        .join(Review, Review.id == Item.final_review_id)
        .where(
            Item.queue == queue,
            Item.field_confidence.is_not(None),
            Item.status.in_([Status.APPROVED, Status.CORRECTED]),
            Review.verdict != Verdict.REJECT,
        )
    )
    seen: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    with store.read(engine) as tx:
        for fields, changed in tx.execute(stmt):
            wrong = set(changed or [])
            for path, confidence in (fields or {}).items():
                seen[path].append((float(confidence), path in wrong))
    rng = np.random.default_rng(0)
    out = []
    for path in sorted(seen):
        occurrences = seen[path]
        threshold = float((q.field_thresholds or {}).get(path, q.threshold))
        n, wrong = len(occurrences), sum(w for _, w in occurrences)
        confident = [w for c, w in occurrences if c >= threshold]
        bins = []
        for k in range(10):
            low, high = k / 10, (k + 1) / 10
            members = [w for c, w in occurrences if low <= c < high or (k == 9 and c == 1.0)]
            if members:
                bins.append(Bin(low=low, high=high, n=len(members), accuracy=1 - sum(members) / len(members)))
        accuracy = _interval(wrong, n, confidence_level, rng)
        flipped = Estimate(
            estimate=None if accuracy.estimate is None else 1 - accuracy.estimate,
            low=None if accuracy.high is None else 1 - accuracy.high,
            high=None if accuracy.low is None else 1 - accuracy.low,
            evidence=n,
        )
        rec, why = None, None
        if target_error is not None:
            for t in CANDIDATES:
                above = [w for c, w in occurrences if c >= t]
                if len(above) >= 10 and _upper(sum(above), len(above), confidence_level, rng) <= target_error:
                    rec = t
                    break
            why = (
                f"the lowest threshold whose confident occurrences are wrong at most {target_error:.1%} "
                f"({confidence_level:.0%} upper bound)"
                if rec is not None
                else f"no threshold up to {CANDIDATES[-1]} is shown to meet {target_error:.1%} yet"
            )
        out.append(
            FieldQuality(
                path=path,
                threshold=threshold,
                reviewed=n,
                changed=wrong,
                accuracy=flipped,
                auto_accepted_error=_interval(sum(confident), len(confident), confidence_level, rng),
                reliability=bins,
                recommendation=rec,
                recommendation_reason=why,
            )
        )
    return out
