"""One place that says what time it is: the database's time.

Timestamps are timezone-aware UTC datetimes everywhere in Python (SQLModel's
``UTCDateTime`` stores them as ``timestamptz`` on PostgreSQL and as UTC text on
SQLite). Tests move time by patching ``reviewqueue.clock.now``.

Several hosts write to one PostgreSQL, and what they stamp must agree: a decision
stamped by a host running 2.5 s behind once fell before an export feed's watermark and
was never exported. So on PostgreSQL the process reads the server's clock (the storage
layer calls :func:`sync` on new connections, at most every :data:`SYNC_SECONDS`) and
:func:`now` is that reading carried forward on this host's monotonic clock: the hosts'
own wall clocks, and any step they take, do not matter. The reading is the midpoint of
the quickest of up to five round trips, so it is off by at most half of one; one whose
round trip took over :data:`MAX_ROUND_TRIP` does not replace a good reading (readers of
"everything before this moment has committed" allow a second of error). On SQLite every writer is on one host and :func:`now` is
that host's clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

log = logging.getLogger(__name__)

#: How often the database's clock is read again.
SYNC_SECONDS = 30.0
#: A host whose clock is further than this from the database's is named in the log.
SKEW_WARNING_SECONDS = 1.0

#: Inside a PostgreSQL write transaction: the transaction's own timestamp, set by the
#: storage layer, which :func:`now` returns (see :func:`pinned`).
_pinned: ContextVar[datetime | None] = ContextVar("reviewqueue_pinned_now", default=None)

#: (database epoch seconds, this host's monotonic seconds) at the last reading.
_anchor: tuple[float, float] | None = None
_synced_at: float | None = None  # monotonic
_sync_lock = threading.Lock()


def now() -> datetime:
    pinned_now = _pinned.get()
    if pinned_now is not None:
        return pinned_now
    anchor = _anchor
    if anchor is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(anchor[0] + (time.monotonic() - anchor[1]), UTC)


@contextmanager
def pinned(moment: datetime) -> Iterator[None]:
    """Within the block, :func:`now` is ``moment``: the storage layer pins a PostgreSQL
    write transaction's own start time (``transaction_timestamp()``), so everything it
    stamps is on the database's clock and never earlier than the transaction's start,
    exactly, whatever this host's clock or its last reading says. (Readers that ask
    "has everything before this moment committed?" rely on that: a reading off by
    more than their margin, under heavy load, once let an export feed skip decisions.)"""
    token = _pinned.set(moment)
    try:
        yield
    finally:
        _pinned.reset(token)


def real_now() -> datetime:
    """The time, even inside :func:`travelling`."""
    anchor = _anchor
    if anchor is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(anchor[0] + (time.monotonic() - anchor[1]), UTC)


#: A reading is trusted when its round trip took at most this long: its error is at
#: most half of it. (Under heavy load every round trip can be slow: the reading is then
#: tried again a second later, keeping the last good one meanwhile.)
MAX_ROUND_TRIP = 0.05
RETRY_SECONDS = 1.0


def sync_due() -> bool:
    synced = _synced_at
    return synced is None or time.monotonic() - synced > SYNC_SECONDS


def sync(read_database_epoch: Callable[[], float]) -> float:
    """Set :func:`now` from the database's clock; returns how far this host's wall
    clock is from it, in seconds (positive: the host is ahead)."""
    global _anchor, _synced_at
    best = None
    for _ in range(5):
        t0 = time.monotonic()
        db = read_database_epoch()
        t1 = time.monotonic()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, db, (t0 + t1) / 2)
        if best[0] <= MAX_ROUND_TRIP / 5:
            break
    rtt, db, mono = best
    skew = time.time() - (db + (time.monotonic() - mono))
    with _sync_lock:
        first = _anchor is None
        if rtt > MAX_ROUND_TRIP and not first:
            # Too uncertain to replace a good reading: try again soon.
            _synced_at = time.monotonic() - SYNC_SECONDS + RETRY_SECONDS
            return skew
        _anchor = (db, mono)
        _synced_at = (
            time.monotonic() if rtt <= MAX_ROUND_TRIP else time.monotonic() - SYNC_SECONDS + RETRY_SECONDS
        )
    if abs(skew) > SKEW_WARNING_SECONDS and (first or abs(skew) > 2 * SKEW_WARNING_SECONDS):
        log.warning(
            "this host's clock is %.1f s %s the database's; reviewqueue stamps everything with the "
            "database's time, but keep the hosts in sync (NTP) for their own logs",
            abs(skew),
            "ahead of" if skew > 0 else "behind",
        )
    return skew


def unsync() -> None:
    """Back to this host's clock (tests)."""
    global _anchor, _synced_at
    with _sync_lock:
        _anchor = _synced_at = None


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


def duration(seconds: float) -> str:
    """A length of time as people say it: "45 s", "4 min 05 s", "2 h 10 min", "3 d 4 h"."""
    seconds = int(seconds)
    if seconds >= 86_400:
        return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


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
