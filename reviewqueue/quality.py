"""How good is the model where nobody looked, and where should the threshold be?

Definitions (docs/quality.md explains them at length):

- An output is **right** when its final verdict is ``approve``, **wrong** when it is
  ``correct`` or ``reject``. Undone decisions do not count; only an item's final
  decision (its status) does.
- Items reach reviewers with known, unequal chances (``items.review_chance``): every
  item below its threshold, an item above it only with the audit rate in force when it
  arrived; and not every queued item is decided yet. Estimates of the whole traffic are
  post-stratified: the items are split into cells of (how they were routed, their
  chance, their 1%-wide confidence band); within a cell the decided items stand for the
  undecided ones. Cells of one routing class with too few decisions are pooled with
  their neighbouring bands until a pool holds ``MIN_POOL`` decisions.
- Uncertainty: a class's error rate gets a Jeffreys posterior (``Beta(wrong + 1/2,
  right + 1/2)``), and each pool's rate a Beta posterior drawn towards its class's rate
  (worth ``PRIOR_DECISIONS`` decisions). A rate over any set of items (the auto-accepted
  traffic, the items at or above a candidate threshold, one confidence bin) is the known
  errors among its decided items plus each pool's draw times its undecided items,
  divided by the set's size, drawn ``DRAWS`` times; the interval is the central
  ``confidence_level`` share of those draws. The simulations in tests/test_quality*.py
  check its coverage over 100 seeds.
- Where an estimate rests on fewer than ``MIN_EVIDENCE`` decisions, or on none at all
  (an audit rate of 0), the report gives no number and says why.

The database does the counting (one ``GROUP BY`` over the queue's items, a join over
its rejections, and the last few thousand review times); everything here works on those
aggregates, a few thousand rows at most, never on items one by one.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import case, func, select

from . import cache, clock, queues, store
from .errors import invalid
from .models import Item, Review
from .vocab import Route, Status, Verdict

#: Decisions a pool of neighbouring confidence bands needs before it stands alone.
MIN_POOL = 10
#: Decisions an estimate must rest on before it is given as a number.
MIN_EVIDENCE = 10
#: Monte Carlo draws for every interval (a fixed seed: the same data, the same report).
DRAWS = 4000
#: Candidate thresholds: 0.50, 0.51, ... 0.99.
CANDIDATES = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))
#: Review times read for the workload forecast (the latest decisions of the window).
TIMING_SAMPLE = 5000
#: Reliability diagram bins: ten, 0.1 wide.
BINS = 10
#: How long the Prometheus gauge's figures are kept (seconds).
GAUGE_MAX_AGE = 60.0
#: The audit campaign a "not enough evidence" answer proposes, in days.
CAMPAIGN_DAYS = 14

_WRONG = (Status.CORRECTED, Status.REJECTED)
_DECIDED = (Status.APPROVED, Status.CORRECTED, Status.REJECTED)
_QUEUED_ROUTES = (Route.BELOW_THRESHOLD, Route.LABEL_THRESHOLD, Route.FIELD_THRESHOLD)


# --- the report ---------------------------------------------------------------------


class Estimate(BaseModel):
    """A rate over items with its interval; all three null with a ``reason`` when the
    evidence does not support a number."""

    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    #: Decided items the estimate rests on.
    evidence: int = 0
    reason: str | None = None


class AutoAcceptedError(Estimate):
    #: Audited items (decided, above the threshold) the estimate comes from.
    audited: int = 0
    #: Items that went out without review.
    items: int = 0


class ReliabilityBin(BaseModel):
    confidence_low: float
    confidence_high: float
    items: int
    decided: int
    mean_confidence: float | None
    accuracy: float | None
    low: float | None
    high: float | None


class ThresholdRow(BaseModel):
    threshold: float
    #: Share of traffic a human would see: below the threshold, plus the audit rate of the rest.
    review_rate: float
    #: Estimated error rate of the outputs at or above the threshold (what would go out unreviewed).
    expected_error: float | None
    error_upper: float | None
    review_items_per_day: float | None
    reviewer_hours_per_day: float | None


class LabelAdvice(BaseModel):
    label: str
    items: int
    current_threshold: float
    recommendation: ThresholdRow | None
    reason: str | None


class VersionQuality(BaseModel):
    model_version: str | None
    items: int
    decided: int
    error: Estimate
    first_seen: datetime | None
    last_seen: datetime | None
    #: The error interval lies entirely above the previous version's.
    drift: bool = False


class QualityReport(BaseModel):
    queue: str
    since: datetime | None
    until: datetime | None
    model_version: str | None
    predicted_label: str | None
    confidence_level: float
    target_error: float | None
    generated_at: datetime
    #: The queue's settings now (the thresholds table reads review load against them).
    threshold: float
    audit_rate: float
    items: int
    by_route: dict[str, int]
    decided: int
    #: Days the window spans (since/until, or first to last item), at least one.
    days: float
    items_per_day: float
    #: Median seconds a reviewer spent per decision (latest decisions of the window).
    median_seconds: float | None
    accuracy: Estimate
    auto_accepted_error: AutoAcceptedError
    reliability: list[ReliabilityBin]
    #: Expected calibration error: mean |accuracy - confidence| over bins, item-weighted.
    ece: float | None
    thresholds: list[ThresholdRow]
    recommendation: ThresholdRow | None
    recommendation_reason: str | None
    #: Classification queues: the same advice per predicted label.
    label_thresholds: list[LabelAdvice] = Field(default_factory=list)
    by_model_version: list[VersionQuality]
    #: {"total": {reason: n}, "by_model_version": {version: {reason: n}}}
    reject_reasons: dict[str, Any]
    notes: list[str] = Field(default_factory=list)
    #: Items sent to review that nobody decided before the deadline: the fallback did
    #: (deadlines.py). They count as unreviewed above.
    deadline_fallbacks: int = 0
    #: Their share of the items sent to review.
    deadline_fallback_share: float | None = None

    def suggested_label_thresholds(self) -> dict[str, float]:
        return {
            a.label: a.recommendation.threshold for a in self.label_thresholds if a.recommendation is not None
        }


# --- what the database counts -------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """Items of one (version, label, route, chance, confidence band)."""

    model_version: str | None
    label: str | None
    route: str
    chance: float | None
    band: int  # 0..99: confidence in [band/100, (band+1)/100)
    items: int
    decided: int
    wrong: int
    confidence_sum: float
    first: datetime | None
    last: datetime | None
    #: Items the queue's deadline fallback decided (unreviewed, for every estimate).
    timed_out: int = 0

    @property
    def queued(self) -> bool:
        """Certain to be reviewed when it arrived (below its threshold, or audited at 100%)."""
        return self.route in _QUEUED_ROUTES or (self.chance or 0.0) >= 1.0

    @property
    def auto(self) -> int:
        return self.items if self.route == Route.AUTO_ACCEPTED else 0


def _cells(queue: str, labels: bool, where: list, engine) -> list[Cell]:
    band = Item.confidence_band
    decided = func.sum(case((Item.status.in_(_DECIDED), 1), else_=0))
    wrong = func.sum(case((Item.status.in_(_WRONG), 1), else_=0))
    timed_out = func.sum(case((Item.status == Status.TIMED_OUT, 1), else_=0))
    label = Item.predicted_label if labels else None
    keys = [Item.model_version, Item.route, Item.review_chance, band] + ([label] if labels else [])
    stmt = (
        select(
            *keys,
            func.count(),
            timed_out,
            decided,
            wrong,
            func.sum(Item.confidence),
            func.min(Item.created_at),
            func.max(Item.created_at),
        )
        .where(Item.queue == queue, *where)
        .group_by(*keys)
    )
    with store.read(engine) as tx:
        rows = tx.execute(stmt).all()
    return [
        Cell(
            model_version=r[0],
            route=r[1],
            chance=r[2],
            band=int(r[3]),
            label=r[4] if labels else None,
            items=r[-7],
            timed_out=int(r[-6] or 0),
            decided=int(r[-5] or 0),
            wrong=int(r[-4] or 0),
            confidence_sum=float(r[-3] or 0.0),
            first=_aware(r[-2]),
            last=_aware(r[-1]),
        )
        for r in rows
    ]


def _aware(value) -> datetime | None:
    return None if value is None else clock.parse(value)


def _reject_reasons(queue: str, where: list, engine) -> dict[str, Any]:
    """Reasons of the final rejections (the decision that made the item ``rejected``)."""
    stmt = (
        select(Item.model_version, Review.reason, func.count())
        .join(Item, Item.final_review_id == Review.id)  # several reviewers: only the final one
        .where(
            Item.queue == queue,
            Review.verdict == Verdict.REJECT,
            Item.status == Status.REJECTED,
            *where,
        )
        .group_by(Item.model_version, Review.reason)
    )
    with store.read(engine) as tx:
        rows = tx.execute(stmt).all()
    total: dict[str, int] = {}
    by_version: dict[str, dict[str, int]] = {}
    for version, reason, n in rows:
        reason = reason or "(none)"
        total[reason] = total.get(reason, 0) + n
        per = by_version.setdefault(version or "(none)", {})
        per[reason] = per.get(reason, 0) + n
    return {"total": dict(sorted(total.items(), key=lambda kv: -kv[1])), "by_model_version": by_version}


def _median_seconds(queue: str, engine) -> float | None:
    """Median seconds of the queue's latest decisions, whatever the report's filters: how
    long a review takes hardly depends on the model version or the window, and without a
    join this is one walk down ``ix_reviews_queue_created`` (joined to the items it took
    0.8 s at a million items on PostgreSQL)."""
    stmt = (
        select(Review.seconds_spent)
        .where(
            Review.queue == queue,
            Review.undone_at.is_(None),
            Review.seconds_spent.is_not(None),
        )
        .order_by(Review.created_at.desc())
        .limit(TIMING_SAMPLE)
    )
    with store.read(engine) as tx:
        values = [v for (v,) in tx.execute(stmt) if v is not None and v >= 0]
    return statistics.median(values) if values else None


# --- estimation ---------------------------------------------------------------------


@dataclass
class _Pool:
    cls: tuple
    decided: int = 0
    wrong: int = 0
    bands: list[int] = field(default_factory=list)


#: Strength of the prior each pool's rate is drawn towards: its class's own rate, worth
#: this many decisions. (A flat prior per pool would add half an error to every pool
#: of ten, several points of error where the truth is 1%.)
PRIOR_DECISIONS = 2.0


def _pool_posteriors(pools: list[_Pool], rng) -> tuple[np.ndarray, np.ndarray]:
    """(point rates, draws[pool, draw]) of each pool's error rate.

    Two levels: a class's rate (all its decisions) gets a Jeffreys posterior; each pool
    of the class then draws from ``Beta(wrong + A p, right + A (1 - p))`` with the
    class's drawn rate ``p`` and ``A = PRIOR_DECISIONS``. So a pool with no errors in ten
    decisions leans towards its class's rate, and the class's own uncertainty carries
    into every pool."""
    if not pools:
        return np.zeros(0), np.zeros((0, DRAWS))
    wrong = np.array([p.wrong for p in pools], dtype=float)
    right = np.array([p.decided - p.wrong for p in pools], dtype=float)
    classes = sorted({p.cls for p in pools}, key=repr)
    index = np.array([classes.index(p.cls) for p in pools])
    cw = np.array([wrong[index == k].sum() for k in range(len(classes))])
    cr = np.array([right[index == k].sum() for k in range(len(classes))])
    class_draws = rng.beta(cw[:, None] + 0.5, cr[:, None] + 0.5, size=(len(classes), DRAWS))
    prior = class_draws[index]  # [pool, draw]
    a = PRIOR_DECISIONS
    draws = rng.beta(wrong[:, None] + a * prior, right[:, None] + a * (1 - prior))
    class_rate = cw / np.maximum(cw + cr, 1)
    rates = (wrong + a * class_rate[index]) / (wrong + right + a)
    return rates, draws


class _Estimator:
    """Post-stratified error estimates over one set of cells, with Monte Carlo intervals."""

    def __init__(self, cells: list[Cell], level: float, seed: int = 0):
        self.cells = cells
        self.level = level
        self.notes: list[str] = []
        self.pool_of: list[int] = []  # cell index -> pool index (-1: nothing to go on)
        pools: list[_Pool] = []
        classes: dict[tuple, list[int]] = {}
        for i, c in enumerate(cells):
            classes.setdefault((c.queued, c.chance), []).append(i)
        self.pool_of = [-1] * len(cells)
        borrowing: list[int] = []
        for key, members in classes.items():
            if sum(cells[i].decided for i in members) == 0:
                borrowing.extend(members)
                continue
            by_band: dict[int, list[int]] = {}
            for i in members:
                by_band.setdefault(cells[i].band, []).append(i)
            current: _Pool | None = None
            for band in sorted(by_band):
                if current is None or current.decided >= MIN_POOL:
                    current = _Pool(key)
                    pools.append(current)
                for i in by_band[band]:
                    current.decided += cells[i].decided
                    current.wrong += cells[i].wrong
                    self.pool_of[i] = len(pools) - 1
                current.bands.append(band)
            if current is not None and current.decided < MIN_POOL and len(pools) >= 2:
                # A short last pool joins the one before it (when that is of this class).
                last, before = len(pools) - 1, len(pools) - 2
                if any(self.pool_of[i] == before for i in members):
                    pools[before].decided += current.decided
                    pools[before].wrong += current.wrong
                    pools[before].bands += current.bands
                    for i in members:
                        if self.pool_of[i] == last:
                            self.pool_of[i] = before
                    pools.pop()
        # Items that arrived with no chance of review (an audit rate of 0) borrow the
        # nearest pool of the same routing class: same confidence, other arrival time.
        pool_queued = [False] * len(pools)
        for i, n in enumerate(self.pool_of):
            if n >= 0:
                pool_queued[n] = cells[i].queued
        borrowed = 0
        for i in borrowing:
            c = cells[i]
            near = [
                (min(abs(b - c.band) for b in p.bands), n)
                for n, p in enumerate(pools)
                if p.decided and pool_queued[n] == c.queued
            ]
            if near:
                distance, n = min(near)
                if distance <= 5:
                    self.pool_of[i] = n
                    borrowed += c.items - c.decided
        if borrowed:
            self.notes.append(
                f"{borrowed:,} items arrived when nothing at their confidence was being audited; "
                "they are assumed to be as often wrong as audited items of the same confidence."
            )
        self.pools = pools
        rng = np.random.default_rng(seed)
        self.rates, self.draws = _pool_posteriors(pools, rng)
        self.spread = self.draws * (1 - self.draws)  # a Bernoulli's variance, per draw
        self.noise = rng.standard_normal(DRAWS)

    def error(self, members, *, only_auto: bool = False) -> Estimate:
        """The error rate over the cells ``members`` (indexes); ``only_auto``: over their
        auto-accepted items only."""
        n = known = 0.0
        undecided = np.zeros(len(self.pools))
        evidence_pools: set[int] = set()
        blind = 0
        for i in members:
            c = self.cells[i]
            size = c.auto if only_auto else c.items
            if not size:
                continue
            n += size
            open_ = size if only_auto else c.items - c.decided
            if not only_auto:
                known += c.wrong
            if open_:
                pool = self.pool_of[i]
                if pool < 0:
                    blind += open_
                else:
                    undecided[pool] += open_
                    evidence_pools.add(pool)
        evidence = sum(self.pools[p].decided for p in evidence_pools)
        if n == 0:
            return Estimate(reason="no items")
        if blind:
            return Estimate(
                evidence=evidence,
                reason=f"{blind:,.0f} of these items had no chance of review and nothing like them was reviewed",
            )
        if undecided.sum() == 0:  # every item decided: the rate is known
            rate = known / n
            return Estimate(estimate=rate, low=rate, high=rate, evidence=int(n))
        if evidence < MIN_EVIDENCE:
            return Estimate(
                evidence=evidence,
                reason=f"only {evidence} decided item(s) to go on; at least {MIN_EVIDENCE} are needed",
            )
        point = (known + undecided @ self.rates) / n
        draws = self._errors(known, undecided) / n
        tail = (1 - self.level) / 2
        low, high = np.quantile(draws, [tail, 1 - tail])
        if not only_auto:
            evidence += int(sum(self.cells[i].decided for i in members))
        return Estimate(
            estimate=float(point),
            low=float(min(low, point)),
            high=float(max(high, point)),
            evidence=int(evidence),
        )

    def _errors(self, known, undecided: np.ndarray) -> np.ndarray:
        """Draws of the number of wrong items: the known ones, plus, for the undecided, the
        expected count under each drawn rate and the chance variation of which of them
        are actually wrong (a normal approximation of the binomial): the interval is about
        these items, not about an endless stream like them."""
        expected = undecided @ self.draws
        variation = np.sqrt(undecided @ self.spread) * self.noise
        return np.clip(
            known + expected + variation, known, known + undecided.sum(axis=-1, keepdims=undecided.ndim > 1)
        )

    def error_many(self, sets: list[list[int]]) -> list[tuple[float | None, float | None]]:
        """(estimate, upper bound) of the error over each set of cells, at once."""
        out = []
        k = len(sets)
        n = np.zeros(k)
        known = np.zeros(k)
        undecided = np.zeros((k, len(self.pools)))
        blind = np.zeros(k)
        for s, members in enumerate(sets):
            for i in members:
                c = self.cells[i]
                n[s] += c.items
                known[s] += c.wrong
                open_ = c.items - c.decided
                if open_:
                    if self.pool_of[i] < 0:
                        blind[s] += open_
                    else:
                        undecided[s, self.pool_of[i]] += open_
        used = undecided > 0
        evidence = used.astype(float) @ np.array([p.decided for p in self.pools], dtype=float)
        point = known + undecided @ self.rates
        tail = (1 - self.level) / 2
        upper = np.quantile(self._errors(known[:, None], undecided), 1 - tail, axis=1)
        for s in range(k):
            if n[s] == 0 or blind[s] or (undecided[s].sum() and evidence[s] < MIN_EVIDENCE):
                out.append((None, None))
            else:
                out.append((float(point[s] / n[s]), float(max(upper[s], point[s]) / n[s])))
        return out


# --- the report ---------------------------------------------------------------------


def report(
    queue: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    model_version: str | None = None,
    predicted_label: str | None = None,
    target_error: float | None = None,
    confidence_level: float = 0.95,
    engine=None,
) -> QualityReport:
    """What the decisions say about the model's outputs in ``queue`` (see the module doc)."""
    engine = engine or store.get_engine()
    q = queues.get(queue, engine=engine)
    if not 0.5 <= confidence_level < 1:
        raise invalid("confidence_level", "must be at least 0.5 and below 1, e.g. 0.95")
    if target_error is not None and not (0 < target_error < 1) or _nan(target_error):
        raise invalid("target_error", "must be a share between 0 and 1, e.g. 0.02 for 2%")
    since = clock.parse(since) if isinstance(since, str) else since
    until = clock.parse(until) if isinstance(until, str) else until
    if since and until and since >= until:
        raise invalid("since", "must be before until")
    where = []
    if since is not None:
        where.append(Item.created_at >= since)
    if until is not None:
        where.append(Item.created_at < until)
    if model_version is not None:
        where.append(Item.model_version == model_version)
    if predicted_label is not None:
        where.append(Item.predicted_label == predicted_label)
    classification = bool(q.labels)
    cells = _cells(queue, classification, where, engine)
    reasons = _reject_reasons(queue, where, engine)
    median = _median_seconds(queue, engine)

    total = sum(c.items for c in cells)
    by_route: dict[str, int] = {}
    for c in cells:
        by_route[c.route] = by_route.get(c.route, 0) + c.items
    first = min((c.first for c in cells if c.first), default=None)
    last = max((c.last for c in cells if c.last), default=None)
    start, end = since or first, until or last
    days = max(1.0, (end - start).total_seconds() / 86_400) if start and end else 1.0
    per_day = total / days

    fallbacks = sum(c.timed_out for c in cells)
    sent = sum(c.items for c in cells if c.route != Route.AUTO_ACCEPTED)
    est = _Estimator(cells, confidence_level)
    everything = list(range(len(cells)))
    overall = est.error(everything)
    accuracy = _flip(overall)
    auto = est.error(everything, only_auto=True)
    audited = sum(c.decided for c in cells if not c.queued)
    auto_items = sum(c.auto for c in cells)
    if auto.estimate is None and auto_items and audited == 0:
        auto.reason = (
            "nothing above the threshold has been audited"
            + (" (audit_rate is 0)" if q.audit_rate == 0 else "")
            + f": set audit_rate to 0.05 for about {CAMPAIGN_DAYS // 7} weeks to find out"
        )
    auto_error = AutoAcceptedError(**auto.model_dump(), audited=audited, items=auto_items)

    reliability, ece = _reliability(est, cells)
    rows = _thresholds(est, cells, q.audit_rate, per_day, median)
    recommendation, why = _recommend(rows, cells, target_error, q, per_day, confidence_level)

    label_advice: list[LabelAdvice] = []
    if classification:
        for label in sorted({c.label for c in cells if c.label is not None}):
            mine = [c for c in cells if c.label == label]
            sub = _Estimator(mine, confidence_level)
            sub_rows = _thresholds(sub, mine, q.audit_rate, sum(c.items for c in mine) / days, median)
            rec, reason = _recommend(sub_rows, mine, target_error, q, per_day, confidence_level)
            label_advice.append(
                LabelAdvice(
                    label=label,
                    items=sum(c.items for c in mine),
                    current_threshold=q.label_thresholds.get(label, q.threshold),
                    recommendation=rec,
                    reason=reason,
                )
            )

    return QualityReport(
        queue=queue,
        since=since,
        until=until,
        model_version=model_version,
        predicted_label=predicted_label,
        confidence_level=confidence_level,
        target_error=target_error,
        generated_at=clock.now(),
        threshold=q.threshold,
        audit_rate=q.audit_rate,
        items=total,
        by_route=by_route,
        decided=sum(c.decided for c in cells),
        days=round(days, 2),
        items_per_day=per_day,
        median_seconds=median,
        accuracy=accuracy,
        auto_accepted_error=auto_error,
        reliability=reliability,
        ece=ece,
        thresholds=rows,
        recommendation=recommendation,
        recommendation_reason=why,
        label_thresholds=label_advice,
        by_model_version=_versions(cells, confidence_level),
        reject_reasons=reasons,
        notes=est.notes,
        deadline_fallbacks=fallbacks,
        deadline_fallback_share=fallbacks / sent if sent else None,
    )


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _flip(error: Estimate) -> Estimate:
    """Accuracy from an error estimate."""
    if error.estimate is None:
        return error
    return Estimate(
        estimate=1 - error.estimate, low=1 - error.high, high=1 - error.low, evidence=error.evidence
    )


def _reliability(est: _Estimator, cells: list[Cell]) -> tuple[list[ReliabilityBin], float | None]:
    bins = []
    weighted = weight = 0.0
    for b in range(BINS):
        members = [i for i, c in enumerate(cells) if c.band * BINS // 100 == b]
        items = sum(cells[i].items for i in members)
        decided = sum(cells[i].decided for i in members)
        mean = sum(cells[i].confidence_sum for i in members) / items if items else None
        acc = _flip(est.error(members)) if decided else Estimate()
        bins.append(
            ReliabilityBin(
                confidence_low=b / BINS,
                confidence_high=(b + 1) / BINS,
                items=items,
                decided=decided,
                mean_confidence=mean,
                accuracy=acc.estimate,
                low=acc.low,
                high=acc.high,
            )
        )
        if acc.estimate is not None and mean is not None:
            weighted += items * abs(acc.estimate - mean)
            weight += items
    return bins, (weighted / weight if weight else None)


def _thresholds(
    est: _Estimator, cells: list[Cell], audit_rate: float, per_day: float, median: float | None
) -> list[ThresholdRow]:
    total = sum(c.items for c in cells)
    sets = [[i for i, c in enumerate(cells) if c.band >= round(t * 100)] for t in CANDIDATES]
    errors = est.error_many(sets)
    rows = []
    for t, members, (estimate, upper) in zip(CANDIDATES, sets, errors, strict=True):
        above = sum(cells[i].items for i in members)
        rate = ((total - above) + audit_rate * above) / total if total else 0.0
        load = rate * per_day
        rows.append(
            ThresholdRow(
                threshold=t,
                review_rate=rate,
                expected_error=estimate,
                error_upper=upper,
                review_items_per_day=load,
                reviewer_hours_per_day=load * median / 3600 if median is not None else None,
            )
        )
    return rows


def _recommend(
    rows: list[ThresholdRow],
    cells: list[Cell],
    target: float | None,
    q,
    per_day: float,
    level: float,
) -> tuple[ThresholdRow | None, str | None]:
    if target is None:
        return None, None
    if not any(c.items for c in cells):
        return None, "no items in this window"
    for row in rows:
        if row.error_upper is not None and row.error_upper <= target:
            return row, None
    # No threshold qualifies: say what evidence would settle it.
    hopeful = [r for r in rows if r.expected_error is not None and r.expected_error < target]
    if not hopeful:
        known = [r for r in rows if r.expected_error is not None]
        if not known:
            audited = sum(c.decided for c in cells if not c.queued)
            return None, (
                f"only {audited} audited item(s) above the threshold {q.threshold:.2f}: "
                f"set audit_rate to at least 0.05 for about {CAMPAIGN_DAYS // 7} weeks to decide"
            )
        best = min(known, key=lambda r: r.expected_error)
        return None, (
            f"no threshold up to {CANDIDATES[-1]:.2f} meets the target {target:.1%}: the lowest estimated "
            f"error is {best.expected_error:.1%} (at or above {best.threshold:.2f}); keep reviewing, "
            "or improve the model"
        )
    # The candidate that the fewest further decisions could settle.
    more, _, best = min(
        (max(_decisions_needed(r.expected_error, target, level) - _decided_at(cells, r.threshold), 1), n, r)
        for n, r in enumerate(hopeful)
    )
    t = best.threshold
    band = round(t * 100)
    audited = sum(c.decided for c in cells if c.band >= band and not c.queued)
    above_threshold = sum(c.items for c in cells if c.band >= max(band, round(q.threshold * 100)))
    daily = per_day * above_threshold / max(sum(c.items for c in cells), 1)
    reason = (
        f"only {audited} audited item(s) at or above {t:.2f}, where the error is estimated at "
        f"{best.expected_error:.1%}: about {more:,} more decisions there would show whether it stays "
        f"under {target:.1%}"
    )
    if daily > 0:
        rate = max(q.audit_rate, more / (CAMPAIGN_DAYS * daily))
        if q.audit_rate and more / (q.audit_rate * daily) <= CAMPAIGN_DAYS:
            days = more / (q.audit_rate * daily)
            reason += (
                f"; at the current audit_rate {q.audit_rate:g} that takes about {max(days, 1):.0f} day(s)"
            )
        elif rate <= 0.5:
            reason += (
                f"; raise audit_rate to {_round_up(rate)} for about {CAMPAIGN_DAYS // 7} weeks to decide"
            )
        else:
            reason += f"; even at audit_rate 0.5 that takes about {more / (0.5 * daily):,.0f} days"
    return None, reason


def _decided_at(cells: list[Cell], threshold: float) -> int:
    band = round(threshold * 100)
    return sum(c.decided for c in cells if c.band >= band)


def _round_up(rate: float) -> str:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5):
        if rate <= step:
            return f"{step:g}"
    return "0.5"


def _decisions_needed(rate: float, target: float, level: float) -> int:
    """Decisions with error ``rate`` after which the Jeffreys upper bound falls to ``target``."""
    rng = np.random.default_rng(1)
    tail = 1 - (1 - level) / 2
    n = 10
    while n < 1_000_000:
        wrong = rate * n
        upper = np.quantile(rng.beta(wrong + 0.5, n - wrong + 0.5, size=4000), tail)
        if upper <= target:
            return n
        n = int(n * 1.25) + 1
    return n


def _versions(cells: list[Cell], level: float) -> list[VersionQuality]:
    versions: dict[str | None, list[Cell]] = {}
    for c in cells:
        versions.setdefault(c.model_version, []).append(c)
    rows = []
    for version, mine in versions.items():
        error = _Estimator(mine, level).error(list(range(len(mine))))
        rows.append(
            VersionQuality(
                model_version=version,
                items=sum(c.items for c in mine),
                decided=sum(c.decided for c in mine),
                error=error,
                first_seen=min((c.first for c in mine if c.first), default=None),
                last_seen=max((c.last for c in mine if c.last), default=None),
            )
        )
    rows.sort(key=lambda r: (r.first_seen is None, r.first_seen or datetime.min))
    for before, now in zip(rows, rows[1:], strict=False):
        if now.error.low is not None and before.error.high is not None and now.error.low > before.error.high:
            now.drift = True
    return rows


# --- acting on it --------------------------------------------------------------------


def apply_recommendation(
    queue: str, target_error: float, *, actor: str, confidence_level: float = 0.95, engine=None
) -> queues.Queue:
    """Set the queue's threshold (and label thresholds) to the advisor's recommendation,
    computed afresh; the ``queue.updated`` event records that it came from the advisor and
    the evidence behind it."""
    engine = engine or store.get_engine()
    rep = report(queue, target_error=target_error, confidence_level=confidence_level, engine=engine)
    labels = rep.suggested_label_thresholds()
    if rep.recommendation is None and not labels:
        raise invalid(
            "target_error",
            rep.recommendation_reason or "no threshold meets the target on the evidence so far",
        )
    settings: dict[str, Any] = {}
    evidence: dict[str, Any] = {
        "source": "quality advisor",
        "target_error": target_error,
        "confidence_level": confidence_level,
        "items": rep.items,
        "decided": rep.decided,
        "audited": rep.auto_accepted_error.audited,
    }
    if rep.recommendation is not None:
        settings["threshold"] = rep.recommendation.threshold
        evidence.update(
            threshold=rep.recommendation.threshold,
            expected_error=rep.recommendation.expected_error,
            error_upper=rep.recommendation.error_upper,
            review_rate=rep.recommendation.review_rate,
        )
    if labels:
        settings["label_thresholds"] = {**queues.get(queue, engine=engine).label_thresholds, **labels}
        evidence["label_thresholds"] = labels
    return queues.update(queue, settings, actor=actor, why=evidence, engine=engine)


def auto_accepted_error_gauge(*, engine=None) -> dict[str, tuple[float, float]]:
    """{queue: (estimate, upper bound)} of the auto-accepted error, for Prometheus;
    recomputed at most once a minute."""
    engine = engine or store.get_engine()

    def compute() -> dict[str, tuple[float, float]]:
        out = {}
        for name in queues.names(engine=engine):
            err = report(name, engine=engine).auto_accepted_error
            if err.estimate is not None:
                out[name] = (err.estimate, err.high)
        return out

    max_age = store.settings_of(engine).counts_max_age and GAUGE_MAX_AGE
    return cache.fresh(("auto-accepted-error", str(engine.url)), max_age, compute)


__all__ = [
    "AutoAcceptedError",
    "Estimate",
    "QualityReport",
    "apply_recommendation",
    "auto_accepted_error_gauge",
    "report",
]
