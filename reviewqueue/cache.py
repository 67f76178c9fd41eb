"""Short-lived, process-wide copies of figures that cost a scan (counts by status, backlog
by age): read by every page run and many API requests, computed at most once per
``max_age`` seconds, in the background.

A read never waits for a refresh, except the very first one for a key: a copy older
than ``max_age`` is returned as it is while one background thread computes the next.
So a million waiting items cost one index scan every few seconds per process, not one
per page view. ``max_age=0`` computes in the caller, every time (tests, and callers
that must see their own writes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_values: dict[Hashable, tuple[float, Any]] = {}
_refreshing: set[Hashable] = set()
_first: dict[Hashable, threading.Lock] = {}


def fresh(key: Hashable, max_age: float, compute: Callable[[], Any]) -> Any:
    """``compute()``'s value for ``key``, at most about ``max_age`` seconds old."""
    if max_age <= 0:
        return compute()
    now = time.monotonic()
    hit = _values.get(key)
    if hit is None:
        with _lock:
            first = _first.setdefault(key, threading.Lock())
        with first:  # one caller computes the first value, the others wait for it
            hit = _values.get(key)
            if hit is None:
                value = compute()
                _values[key] = (time.monotonic(), value)
                return value
    at, value = hit
    if now - at > max_age:
        with _lock:
            start = key not in _refreshing
            _refreshing.add(key)
        if start:
            threading.Thread(
                target=_refresh, args=(key, compute), name="reviewqueue-cache", daemon=True
            ).start()
    return value


def _refresh(key: Hashable, compute: Callable[[], Any]) -> None:
    try:
        _values[key] = (time.monotonic(), compute())
    except Exception:  # keep serving the last value; try again at the next read
        log.exception("refreshing %r failed", key)
    finally:
        with _lock:
            _refreshing.discard(key)


def forget(key: Hashable | None = None) -> None:
    """Drop one cached value (or all): the next read computes afresh."""
    with _lock:
        if key is None:
            _values.clear()
        else:
            _values.pop(key, None)
