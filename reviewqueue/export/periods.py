"""Export periods: an ISO week, an explicit range, or "since the feed's last run"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .. import clock, store
from ..errors import invalid


@dataclass
class Period:
    label: str
    since: datetime
    until: datetime
    mode: str  # week, range or incremental


def week(spec: str) -> Period:
    try:
        year, _, wk = spec.upper().partition("-W")
        start = datetime.combine(date.fromisocalendar(int(year), int(wk), 1), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise invalid("week", f"{spec!r} is not an ISO week like 2026-W47") from None
    return Period(f"{int(year)}-W{int(wk):02d}", start, start + timedelta(days=7), "week")


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def span(since: datetime, until: datetime, mode: str = "range") -> Period:
    if until <= since:
        raise invalid(
            "until", f"the period's end ({clock.iso(until)}) must be after its start ({clock.iso(since)})"
        )
    return Period(f"{_stamp(since)}_{_stamp(until)}", since, until, mode)


def settled_until(engine) -> datetime:
    """A moment before which every decision has committed.

    ``decide`` stamps ``decided_at`` inside its write transaction, after the
    transaction's first statement. SQLite: we take the write lock, so no decision is
    in flight, and read the clock. PostgreSQL: no transaction that is still open can
    stamp a time earlier than its own start, so the bound is the oldest open
    transaction's start (or now), less a second for clock skew between hosts.
    """
    if store.is_sqlite(engine):
        with store.write(engine):
            return clock.now()
    return store.settled_before(engine, clock.now())
