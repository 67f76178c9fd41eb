"""One place that says what time it is.

Timestamps are timezone-aware UTC datetimes everywhere in Python (SQLModel's
``UTCDateTime`` stores them as ``timestamptz`` on PostgreSQL and as UTC text on
SQLite). Tests move time by patching ``reviewqueue.clock.now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def real_now() -> datetime:
    """The time, even inside :func:`travelling`."""
    return datetime.now(UTC)


@contextmanager
def travelling(to: Callable[[], datetime]) -> Iterator[None]:
    """Within the block, ``now()`` is ``to()``: the demo and the benchmarks write weeks
    of history in seconds with it. Process-wide: for single-threaded set-up code only."""
    global now
    real = now
    now = to
    try:
        yield
    finally:
        now = real


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, the only format reviewqueue emits."""
    if dt is None:
        return None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(value: str | datetime) -> datetime:
    """Accept ISO 8601 (with Z, an offset, or naive meaning UTC); return aware UTC."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
