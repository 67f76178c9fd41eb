"""How much reviewers agree, and how each reviewer is doing.

Per queue, over a window of decisions: percent agreement and Krippendorff's alpha for
nominal data, each with a bootstrap interval; per reviewer: decisions, median seconds,
agreement with the final decision, how often a lead's adjudication overturned them, and
progress today and this week.

The values compared are what two decisions must share to agree (``consensus.key``): the
verdict, and on classification queues the final label too. Only reviewers' own
decisions count (not undone, not a lead's adjudication); an item is a *unit* when at
least two of them fall in the window.

Alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", section C):
with ``n_uc`` the number of values ``c`` in unit ``u``, ``m_u`` the unit's values and
``n`` all pairable values, the observed disagreement is
``D_o = 1/n * sum_u (m_u^2 - sum_c n_uc^2) / (m_u - 1)`` and the expected one
``D_e = (n^2 - sum_c n_c^2) / (n (n - 1))``; ``alpha = 1 - D_o / D_e``. Intervals
resample units with replacement (a fixed seed: the same data gives the same report).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from . import clock, consensus, queues, store
from .models import Item, Review
from .vocab import Status

#: Bootstrap resamples; chunked so memory stays small at a hundred thousand units.
DRAWS = 1000
_CHUNK = 100
_SEED = 20111


class Interval(BaseModel):
    """A figure with its bootstrap interval; null when there is nothing to compare."""

    estimate: float | None = None
    low: float | None = None
    high: float | None = None


class ReviewerStats(BaseModel):
    reviewer: str
    #: Decisions in the window (not undone).
    decisions: int
    median_seconds: float | None
    #: Of their decisions on items whose final decision was reached by several reviewers
    #: or a lead: how many there were, and the share agreeing with the final one.
    compared: int
    agreement_with_final: float | None
    #: Their decisions on items a lead settled differently.
    overturned: int
    #: Progress in this queue, whatever the window: today and this ISO week (UTC).
    today: int
    this_week: int


class AgreementReport(BaseModel):
    queue: str
    since: datetime | None
    until: datetime | None
    reviews_required: int
    #: "verdict", or "verdict+label" on classification queues.
    compared_on: str
    #: Items with at least two reviewers' decisions in the window, and those decisions.
    units: int
    decisions: int
    #: Share of agreeing pairs of decisions on one item, averaged over items.
    percent_agreement: Interval
    #: Krippendorff's alpha, nominal: 1 is perfect agreement, 0 what chance would give.
    alpha: Interval
    confidence_level: float
    disputes_open: int
    adjudicated: int
    reviewers: list[ReviewerStats] = Field(default_factory=list)


def _reviews(queue: str, since, until, engine) -> list:
    final = aliased(Review)
    where = [Review.queue == queue, Review.undone_at.is_(None), Review.adjudication.is_(False)]
    if since is not None:
        where.append(Review.created_at >= since)
    if until is not None:
        where.append(Review.created_at < until)
    stmt = (
        select(
            Review.item_id,
            Review.reviewer,
            Review.verdict,
            Review.final_label,
            Review.seconds_spent,
            final.verdict,
            final.final_label,
            final.adjudication,
        )
        .join(Item, Item.id == Review.item_id)
        .outerjoin(final, and_(final.id == Item.final_review_id))
        .where(*where)
    )
    with store.read(engine) as tx:
        return tx.execute(stmt).all()


def _progress(queue: str, engine) -> dict[str, tuple[int, int]]:
    now = clock.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    stmt = (
        select(Review.reviewer, Review.created_at)
        .where(
            Review.queue == queue,
            Review.undone_at.is_(None),
            Review.adjudication.is_(False),
            Review.created_at >= week,
        )
        .order_by(Review.reviewer)
    )
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with store.read(engine) as tx:
        for reviewer, at in tx.execute(stmt):
            counts = out[reviewer]
            counts[1] += 1
            if clock.parse(at) >= day:
                counts[0] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def _open_and_settled(queue: str, engine) -> tuple[int, int]:
    with store.read(engine) as tx:
        disputed = tx.execute(
            select(func.count()).where(Item.queue == queue, Item.status == Status.DISPUTED)
        ).scalar_one()
        settled = tx.execute(
            select(func.count()).where(
                Review.queue == queue, Review.adjudication.is_(True), Review.undone_at.is_(None)
            )
        ).scalar_one()
    return disputed, settled


def unit_matrix(units: list[list]) -> np.ndarray:
    """Units × values counts (``n_uc``) from each unit's list of values."""
    codes: dict = {}
    for values in units:
        for v in values:
            codes.setdefault(v, len(codes))
    matrix = np.zeros((len(units), max(len(codes), 1)), dtype=np.float64)
    for u, values in enumerate(units):
        for v in values:
            matrix[u, codes[v]] += 1
    return matrix


def _figures(weights: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha and percent agreement for each row of unit ``weights`` (draws × units)."""
    m = counts.sum(axis=1)
    sq = (counts**2).sum(axis=1)
    disagree = (m**2 - sq) / (m - 1)  # per unit, before dividing by n
    pairs_agree = (sq - m) / (m * (m - 1))  # share of agreeing ordered pairs in the unit
    n = weights @ m
    n_c = weights @ counts
    with np.errstate(invalid="ignore", divide="ignore"):
        d_o = (weights @ disagree) / n
        d_e = (n**2 - (n_c**2).sum(axis=1)) / (n * (n - 1))
        alpha = np.where(d_e > 0, 1 - d_o / d_e, np.where(d_o > 0, np.nan, 1.0))
        percent = (weights @ pairs_agree) / weights.sum(axis=1)
    return alpha, percent


def alpha(units: list[list]) -> float | None:
    """Krippendorff's alpha for nominal values; units with fewer than two values are
    not pairable and ignored. ``None`` when nothing is pairable; 1.0 when every value
    is the same (no disagreement to explain)."""
    pairable = [u for u in units if len(u) >= 2]
    if not pairable:
        return None
    a, _ = _figures(np.ones((1, len(pairable))), unit_matrix(pairable))
    return None if np.isnan(a[0]) else float(a[0])


def intervals(units: list[list], level: float = 0.95, draws: int = DRAWS) -> tuple[Interval, Interval]:
    """Alpha and percent agreement with bootstrap intervals over units."""
    pairable = [u for u in units if len(u) >= 2]
    if not pairable:
        return Interval(), Interval()
    counts = unit_matrix(pairable)
    k = len(pairable)
    a, p = _figures(np.ones((1, k)), counts)
    rng = np.random.default_rng(_SEED)
    alphas, percents = [], []
    for start in range(0, draws, _CHUNK):
        size = min(_CHUNK, draws - start)
        weights = rng.multinomial(k, np.full(k, 1 / k), size=size).astype(np.float64)
        ba, bp = _figures(weights, counts)
        alphas.append(ba)
        percents.append(bp)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100

    def interval(point, samples):
        samples = np.concatenate(samples)
        samples = samples[~np.isnan(samples)]
        if np.isnan(point) or not len(samples):
            return Interval()
        return Interval(
            estimate=round(float(point), 4),
            low=round(float(np.percentile(samples, lo)), 4),
            high=round(float(np.percentile(samples, hi)), 4),
        )

    return interval(a[0], alphas), interval(p[0], percents)


def report(
    queue: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    confidence_level: float = 0.95,
    engine=None,
) -> AgreementReport:
    """Agreement and per-reviewer figures of ``queue`` over decisions made in
    ``[since, until)`` (all of them by default)."""
    engine = engine or store.get_engine()
    q = queues.get(queue, engine=engine)
    classification = bool(q.labels)
    rows = _reviews(queue, since, until, engine)

    by_item: dict[str, list] = defaultdict(list)
    per_reviewer: dict[str, dict] = defaultdict(
        lambda: {"decisions": 0, "seconds": [], "compared": 0, "agree": 0, "overturned": 0}
    )
    for item_id, reviewer, verdict, label, seconds, f_verdict, f_label, f_adjudicated in rows:
        mine = consensus.key(_Decision(verdict, label), classification)
        by_item[item_id].append(mine)
        stats = per_reviewer[reviewer]
        stats["decisions"] += 1
        if seconds is not None and seconds >= 0:
            stats["seconds"].append(seconds)
        if f_verdict is not None and (f_adjudicated or q.reviews_required > 1):
            agrees = mine == consensus.key(_Decision(f_verdict, f_label), classification)
            stats["compared"] += 1
            stats["agree"] += agrees
            stats["overturned"] += bool(f_adjudicated) and not agrees

    units = [values for values in by_item.values() if len(values) >= 2]
    a, p = intervals(units, confidence_level)
    progress = _progress(queue, engine)
    disputed, settled = _open_and_settled(queue, engine)
    reviewers = [
        ReviewerStats(
            reviewer=name,
            decisions=s["decisions"],
            median_seconds=round(statistics.median(s["seconds"]), 1) if s["seconds"] else None,
            compared=s["compared"],
            agreement_with_final=round(s["agree"] / s["compared"], 4) if s["compared"] else None,
            overturned=s["overturned"],
            today=progress.get(name, (0, 0))[0],
            this_week=progress.get(name, (0, 0))[1],
        )
        for name, s in sorted(per_reviewer.items())
    ]
    for name in sorted(set(progress) - set(per_reviewer)):  # active this week, not in the window
        today, week = progress[name]
        reviewers.append(
            ReviewerStats(
                reviewer=name,
                decisions=0,
                median_seconds=None,
                compared=0,
                agreement_with_final=None,
                overturned=0,
                today=today,
                this_week=week,
            )
        )
    return AgreementReport(
        queue=queue,
        since=since,
        until=until,
        reviews_required=q.reviews_required,
        compared_on="verdict+label" if classification else "verdict",
        units=len(units),
        decisions=sum(len(u) for u in units),
        percent_agreement=p,
        alpha=a,
        confidence_level=confidence_level,
        disputes_open=disputed,
        adjudicated=settled,
        reviewers=reviewers,
    )


class _Decision:
    __slots__ = ("verdict", "final_label")

    def __init__(self, verdict, final_label):
        self.verdict = verdict
        self.final_label = final_label


def disputes_open(*, engine=None) -> dict[str, int]:
    """Disputed items per queue (every queue, zeros included), for /metrics: from the
    queue counts the app keeps fresh (``queues.figures``), never a scan."""
    counts = queues.counts(engine=engine)
    return {name: counts.get(name, {}).get(Status.DISPUTED, 0) for name in queues.names(engine=engine)}
