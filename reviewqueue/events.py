"""The append-only audit log. Domain code records an event in the same unit of work as the
change it describes, so the log can never disagree with the data.

Every event carries a MAC of its fields made with the server key (``mac``: a random
nonce and ``HMAC-SHA256``), which someone with write access to the database but not
the key cannot make: an event slipped in or edited is found by ``audit verify`` even
before it is sealed, and the sealer refuses to seal it (audit.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from . import clock, keys, store
from .models import Event
from .store import queries
from .vocab import EventKind


@lru_cache(maxsize=4)
def _event_key(key: bytes) -> bytes:
    return hashlib.sha256(b"reviewqueue-audit-event:" + base64.urlsafe_b64decode(key)).digest()


def _norm(value: Any) -> Any:
    """JSON as both databases give it back: PostgreSQL's jsonb returns a float with no
    fraction (1e20) as an integer."""
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def fields_mac(mac_key: bytes, nonce: str, at: str, actor, kind, item_id, queue, before, after) -> str:
    fields = json.dumps(
        [nonce, at, actor, kind, item_id, queue, _norm(before), _norm(after)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return hmac.new(mac_key, fields, hashlib.sha256).hexdigest()


def mac_key(settings) -> bytes:
    return _event_key(keys.key(settings))


def event_key_of(key: bytes) -> bytes:
    """The events' MAC key derived from a server key (a retired one, for older seals)."""
    return _event_key(key)


def record(
    tx: store.Tx,
    kind: EventKind,
    actor: str,
    *,
    item_id: str | None = None,
    queue: str | None = None,
    before: Any = None,
    after: Any = None,
    at: datetime | None = None,
) -> None:
    at = at or clock.now()
    nonce = os.urandom(8).hex()
    mac = fields_mac(
        mac_key(store.settings_of(tx.engine)),
        nonce,
        clock.iso(at),
        actor,
        kind,
        item_id,
        queue,
        before,
        after,
    )
    queries.INSERT_EVENT.run(
        tx,
        {
            "at": at,
            "actor": actor,
            "kind": kind,
            "item_id": item_id,
            "queue": queue,
            "before": before,
            "after": after,
            "mac": f"{nonce}:{mac}",
        },
    )


def history(item_id: str, *, engine=None) -> list[Event]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(Event).where(Event.item_id == item_id).order_by(Event.id)))


_VERBS = {"approve": "approved it", "correct": "corrected it", "reject": "rejected it"}
_FIELDS = {
    "audit_rate": "audit rate",
    "lease_seconds": "lease",
    "label_thresholds": "label thresholds",
    "reject_reasons": "reject reasons",
    "reviews_required": "reviews required",
}


def describe(event: Event) -> str:
    """One event as a sentence a person reads ("maria approved it", "threshold 0.75 → 0.7")."""
    kind, actor, before, after = event.kind, event.actor, event.before or {}, event.after or {}
    if kind == EventKind.ITEMS_INGESTED:
        routes = ", ".join(f"{n} {r}" for r, n in sorted((after.get("routes") or {}).items()))
        return f"{actor} posted it ({routes})" if after.get("count") == 1 else f"{actor} posted {routes}"
    if kind == EventKind.ITEM_CLAIMED:
        return f"{actor} claimed it"
    if kind == EventKind.ITEM_RELEASED:
        return f"{actor} skipped it; it went back to the queue"
    if kind == EventKind.ITEM_LEASE_EXPIRED:
        return f"{before.get('lease_holder') or 'its reviewer'}'s lease ran out; it went back to the queue"
    if kind == EventKind.ITEM_DECIDED:
        return f"{actor} {_VERBS.get(after.get('verdict'), 'decided it')}"
    if kind == EventKind.ITEM_DEADLINE_NEAR:
        return f"its deadline is near ({after.get('seconds_left')} s left): the app was warned"
    if kind == EventKind.ITEM_DEADLINE_PASSED:
        action = after.get("action")
        what = {
            "accept": "the model's output stands (accepted by the system, not a reviewer)",
            "reject": f"rejected by the system ({after.get('reason')}), not a reviewer",
            "escalate": f"moved to queue {after.get('queue')}",
            "keep": "it waits on, late" + (f" ({after['why']})" if after.get("why") else ""),
        }.get(action, str(action))
        return f"the deadline passed with no decision: {what}"
    if kind == EventKind.ITEM_REVIEWED_AFTER_DEADLINE:
        return f"{actor} {_VERBS.get(after.get('verdict'), 'decided it')} after the deadline (kept as evaluation data)"
    if kind == EventKind.ITEM_DECISION_UNDONE:
        return f"{actor} undid their decision"
    if kind in (EventKind.QUEUE_UPDATED, EventKind.QUEUE_CREATED):
        changes = "; ".join(
            f"{_FIELDS.get(k, k)} {_short(before[k])} → {_short(v)}"
            if k in before
            else f"{_FIELDS.get(k, k)} {_short(v)}"
            for k, v in after.items()
            if k != "why"
        )
        verb = "created the queue" if kind == EventKind.QUEUE_CREATED else "changed"
        why = after.get("why") or {}
        because = f" (from the {why['source']})" if isinstance(why, dict) and why.get("source") else ""
        return f"{actor} {verb}: {changes}{because}" if changes else f"{actor} {verb}{because}"
    details = ", ".join(f"{k} {_short(v)}" for k, v in after.items()) if isinstance(after, dict) else ""
    return f"{actor}: {kind}" + (f" ({details})" if details else "")


def _short(value: Any) -> str:
    text = (
        value if isinstance(value, str) else repr(value) if not isinstance(value, dict | list) else str(value)
    )
    return text if len(text) <= 80 else text[:77] + "..."
