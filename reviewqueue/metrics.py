"""Numbers about the queues, computed from the database (so every process, API worker
or UI, reports the same): ingest by route, decisions by verdict, backlog and its age,
decisions per day, time to decision."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from . import cache, clock, queues, store
from .models import Event, Item, Queue, Review
from .vocab import DECIDED, WAITING, EventKind

#: Seconds the Prometheus totals may be old: counting by route reads every item.
TOTALS_MAX_AGE = 30.0


def ingested_by_route(*, engine=None) -> dict[tuple[str, str], int]:
    """Items by queue and route (a full count, so kept for ``TOTALS_MAX_AGE`` seconds)."""
    engine = engine or store.get_engine()
    return cache.fresh(("ingested-by-route", str(engine.url)), _totals_age(engine), lambda: _by_route(engine))


def _totals_age(engine) -> float:
    configured = store.settings_of(engine).counts_max_age
    return configured and max(configured, TOTALS_MAX_AGE)


def _by_route(engine) -> dict[tuple[str, str], int]:
    with store.read(engine) as tx:
        return {
            (q, r): n
            for q, r, n in tx.execute(
                select(Item.queue, Item.route, func.count()).group_by(Item.queue, Item.route)
            )
        }


def decisions_by_verdict(*, engine=None) -> dict[tuple[str, str], int]:
    engine = engine or store.get_engine()
    return cache.fresh(
        ("decisions-by-verdict", str(engine.url)), _totals_age(engine), lambda: _by_verdict(engine)
    )


def _by_verdict(engine) -> dict[tuple[str, str], int]:
    with store.read(engine) as tx:
        return {
            (q, v): n
            for q, v, n in tx.execute(
                select(Review.queue, Review.verdict, func.count())
                .where(Review.undone_at.is_(None))
                .group_by(Review.queue, Review.verdict)
            )
        }


def deadline_fallbacks(*, since=None, engine=None) -> dict[tuple[str, str], int]:
    """Deadlines passed with no human answer, by (queue it was in, action taken): every
    ``item.deadline_passed`` event (since ``since``). Cached like the other totals
    when ``since`` is none."""
    engine = engine or store.get_engine()
    if since is not None:
        return _fallbacks(engine, since)
    return cache.fresh(
        ("deadline-fallbacks", str(engine.url)), _totals_age(engine), lambda: _fallbacks(engine, None)
    )


def _fallbacks(engine, since) -> dict[tuple[str, str], int]:
    after = Event.__table__.c.after
    action = (
        after.op("->>")("action")
        if engine.dialect.name == "postgresql"
        else func.json_extract(after, "$.action")
    )
    where = [Event.kind == EventKind.ITEM_DEADLINE_PASSED] + (
        [Event.at >= since] if since is not None else []
    )
    with store.read(engine) as tx:
        return {
            (q or "", a or ""): n
            for q, a, n in tx.execute(
                select(Event.queue, action, func.count()).where(*where).group_by(Event.queue, action)
            )
        }


def decided_since(since, *, engine=None) -> dict[str, int]:
    """Items made final by reviewers since ``since``, per queue (ix_items_decided)."""
    with store.read(engine) as tx:
        return dict(
            tx.execute(
                select(Item.queue, func.count())
                .where(Item.decided_at >= since, Item.status.in_(sorted(DECIDED)))
                .group_by(Item.queue)
            ).all()
        )


#: Items "due soon" in a queue without warn_seconds: due within this many seconds.
DUE_SOON_SECONDS = 300


def due_soon(*, engine=None) -> dict[str, int]:
    """Per queue with deadlines: waiting items due within its ``warn_seconds`` (or
    :data:`DUE_SOON_SECONDS`)."""
    from . import deadlines

    engine = engine or store.get_engine()
    with store.read(engine) as tx:
        rows = tx.execute(select(Queue.name, Queue.warn_seconds)).all()
    return {name: deadlines.due_soon(name, warn or DUE_SOON_SECONDS, engine=engine) for name, warn in rows}


def backlog(*, engine=None) -> dict[str, dict]:
    """Per queue: waiting items (pending, in review, disputed) and the oldest one's age in
    seconds (from the queues' cached figures)."""
    now = clock.now()
    figures = queues.figures(engine=engine)
    return {
        q: {
            "waiting": sum(n for s, n in counts.items() if s in WAITING),
            "oldest_age_seconds": (now - figures.oldest[q]).total_seconds() if q in figures.oldest else 0.0,
        }
        for q, counts in figures.counts.items()
        if any(s in WAITING for s in counts)
    }


def backlog_by_age(*, engine=None) -> list[dict]:
    """Waiting items per queue in age buckets, for the dashboard (cached figures)."""
    figures = queues.figures(engine=engine)
    return [
        {"queue": q, "age": label, "items": n}
        for q, buckets in figures.ages.items()
        for label, n in buckets.items()
        if n
    ]


def decisions_per_day(*, days: int = 30, engine=None) -> list[dict]:
    since = clock.now() - timedelta(days=days)
    day = func.date(Review.created_at)
    with store.read(engine) as tx:
        rows = tx.execute(
            select(day, Review.verdict, func.count())
            .where(Review.created_at >= since, Review.undone_at.is_(None))
            .group_by(day, Review.verdict)
            .order_by(day)
        ).all()
    return [{"day": str(d), "verdict": v, "decisions": n} for d, v, n in rows]


def median_time_to_decision(*, days: int = 30, engine=None) -> dict[str, float]:
    """Per queue, median seconds from ingest to decision over the last ``days``."""
    since = clock.now() - timedelta(days=days)
    with store.read(engine) as tx:
        rows = tx.execute(
            select(Item.queue, Item.created_at, Item.decided_at)
            .where(Item.decided_at.is_not(None), Item.decided_at >= since)
            .order_by(Item.decided_at.desc())
            .limit(20_000)
        ).all()
    per: dict[str, list[float]] = {}
    for q, created, decided in rows:
        per.setdefault(q, []).append((clock.parse(decided) - clock.parse(created)).total_seconds())
    result = {}
    for q, values in per.items():
        values.sort()
        mid = len(values) // 2
        result[q] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return result


def reviewer_progress(reviewer: str, queue: str | None = None, *, engine=None) -> dict:
    """What a reviewer sees of their own work: decisions today and this week (UTC, the
    week from Monday), and their median seconds per decision this week. Reads the
    reviewer's own rows through ``(reviewer, created_at)``."""
    now = clock.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=today.weekday())
    stmt = select(Review.created_at, Review.seconds_spent).where(
        Review.reviewer == reviewer, Review.created_at >= week, Review.undone_at.is_(None)
    )
    if queue is not None:
        stmt = stmt.where(Review.queue == queue)
    with store.read(engine) as tx:
        rows = tx.execute(stmt).all()
    seconds = sorted(s for _, s in rows if s is not None)
    median = None
    if seconds:
        mid = len(seconds) // 2
        median = seconds[mid] if len(seconds) % 2 else (seconds[mid - 1] + seconds[mid]) / 2
    return {
        "today": sum(1 for at, _ in rows if clock.parse(at) >= today),
        "week": len(rows),
        "median_seconds": median,
    }
