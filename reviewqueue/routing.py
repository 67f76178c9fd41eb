"""Which outputs a human must see. Pure functions: no database, no clock.

- Below the threshold (the label's own threshold when the queue sets one for the
  predicted label): review.
- Otherwise a deterministic audit sample of ``audit_rate``: the draw is a hash of the
  queue and the item's key (its external_id, or its content), so resubmitting the
  same output can never flip it in or out of the sample.
- The rest is stored as ``auto_accepted``: calibration needs the whole distribution.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from .vocab import Route, Status


def threshold_for(
    threshold: float, label_thresholds: dict[str, float], label: str | None
) -> tuple[float, bool]:
    """The threshold that applies and whether it is a per-label one."""
    if label is not None and label in label_thresholds:
        return float(label_thresholds[label]), True
    return float(threshold), False


def content_key(input: Any, output: Any, model: str | None, model_version: str | None) -> str:
    """Stands in for external_id in the audit draw when the app gave none."""
    blob = json.dumps([input, output, model, model_version], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def audit_draw(queue: str, key: str) -> float:
    """A number in [0, 1) fixed by (queue, key): compare it with the audit rate."""
    digest = hashlib.sha256(f"{queue}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route(
    *,
    queue: str,
    threshold: float,
    label_thresholds: dict[str, float],
    audit_rate: float,
    confidence: float,
    predicted_label: str | None,
    key: str,
) -> tuple[Status, Route]:
    """Return ``(status, route)`` for a new item."""
    limit, per_label = threshold_for(threshold, label_thresholds, predicted_label)
    if confidence < limit:
        return Status.PENDING, (Route.LABEL_THRESHOLD if per_label else Route.BELOW_THRESHOLD)
    if audit_rate > 0 and audit_draw(queue, key) < audit_rate:
        return Status.PENDING, Route.AUDIT_SAMPLE
    return Status.AUTO_ACCEPTED, Route.AUTO_ACCEPTED


def claim_order(priority: int, confidence: float, item_id: str, deadline: datetime | None = None) -> str:
    """Sort key whose ascending text order is the claim order (see ``models.Item``).

    Within a priority, items with a deadline come first, soonest due first: their key
    goes on with "/" and the deadline in whole seconds since 1970, and "/" sorts before
    the digits a confidence starts with (and after the "-" of ``decisions.in_progress``).
    Their confidence is kept to 6 places so the key fits the column (64 characters)."""
    if deadline is None:
        return f"{1000 - priority:04d}{confidence:.12f}{item_id}"
    due = min(max(int(deadline.timestamp()), 0), 9_999_999_999)
    return f"{1000 - priority:04d}/{due:010d}{confidence:.6f}{item_id}"


def review_chance(how: Route, audit_rate: float) -> float:
    """The chance an item routed ``how`` had of being queued: certain below the
    threshold, the audit rate above it (stored with the item; quality.py weights by it)."""
    return audit_rate if how in (Route.AUDIT_SAMPLE, Route.AUTO_ACCEPTED) else 1.0


def confidence_band(confidence: float) -> int:
    """The 1%-wide band a confidence falls in, 0-99. A hair is added so that 0.29 lands
    in band 29, as ``0.29 >= 0.29`` routes it, not in 28 through 28.999999999999996."""
    return min(99, int(confidence * 100 + 1e-9))
