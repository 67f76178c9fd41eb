"""The audit trail: every change of state is an event (``events.py``); here the events are
read, exported, and sealed into a hash chain nobody can quietly edit.

Sealing happens in blocks, off the request path (a background thread of the API and
``up``, or ``reviewqueue audit seal``), so a claim or a decision pays nothing for it. A
seal covers the events stamped before a *settled* moment (every transaction that could
still stamp an earlier time has ended: see ``store.settled_before``), in ``(at, id)``
order, continuing from the previous seal:

    chain_n = HMAC-SHA256(server key, chain_(n-1) || canonical(event_n))

with the server key of ``keys.py``, which is not in the database. ``verify`` recomputes
every sealed block: an event edited, deleted, or slipped in afterwards changes the
block's count or chain, and says which block. The newest chain value (``head``) can be
written down elsewhere (a ticket, a log shipper) to anchor the whole log: a seal can
only be rewritten with the key.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select

from . import clock, keys, store
from .errors import invalid
from .models import AuditSeal, Event
from .store import queries

log = logging.getLogger(__name__)
GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 5000


def canonical(event) -> bytes:
    """The bytes an event is sealed as: every field, in a fixed form."""
    return json.dumps(
        [
            event.id,
            clock.iso(clock.parse(event.at)),
            event.actor,
            event.kind,
            event.item_id,
            event.queue,
            event.before,
            event.after,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _link(mac_key: bytes, chain: str, event) -> str:
    return hmac.new(mac_key, chain.encode() + canonical(event), hashlib.sha256).hexdigest()


def _mac_key(engine) -> bytes:
    return hashlib.sha256(
        b"reviewqueue-audit:" + base64.urlsafe_b64decode(keys.key(store.settings_of(engine)))
    ).digest()


def _settled(engine) -> datetime:
    if store.is_sqlite(engine):
        with store.write(engine):  # no writer in flight: everything stamped before now has committed
            return clock.now()
    return store.settled_before(engine, clock.now())


def _events_between(engine, since: datetime, until: datetime):
    """Events with ``since <= at < until`` in ``(at, id)`` order, streamed."""
    last = None
    while True:
        stmt = select(Event).where(Event.at >= since, Event.at < until)
        if last is not None:
            stmt = stmt.where(or_(Event.at > last[0], and_(Event.at == last[0], Event.id > last[1])))
        with store.read(engine) as tx:
            rows = list(tx.session.scalars(stmt.order_by(Event.at, Event.id).limit(_CHUNK)))
        yield from rows
        if len(rows) < _CHUNK:
            return
        last = (rows[-1].at, rows[-1].id)


def seal(*, engine=None) -> AuditSeal | None:
    """Seal the events that have settled since the last seal; returns the new seal (or
    ``None`` when there was nothing new)."""
    engine = engine or store.get_engine()
    mac_key = _mac_key(engine)
    with store.read(engine) as tx:
        previous = tx.session.scalars(select(AuditSeal).order_by(AuditSeal.id.desc()).limit(1)).first()
    since = clock.parse(previous.until_at) if previous else _EPOCH
    chain = previous.chain if previous else GENESIS
    until = _settled(engine)
    if until <= since:
        return None
    count = 0
    for event in _events_between(engine, since, until):
        chain = _link(mac_key, chain, event)
        count += 1
    if count == 0:
        return None
    with store.write(engine) as tx:
        queries.lock_key(tx, "audit-seal")
        latest = tx.session.scalars(select(AuditSeal).order_by(AuditSeal.id.desc()).limit(1)).first()
        if (latest.id if latest else None) != (previous.id if previous else None):
            return None  # another process sealed meanwhile; its seal stands
        new = AuditSeal(until_at=until, events=count, chain=chain, sealed_at=clock.now())
        tx.session.add(new)
    return new


@dataclass
class Verification:
    ok: bool
    seals: int
    events: int
    head: str
    problem: str | None = None
    #: Events recorded since the last seal (not yet covered).
    unsealed: int = 0


def verify(*, engine=None) -> Verification:
    """Recompute every sealed block; the first one that does not match is reported."""
    engine = engine or store.get_engine()
    mac_key = _mac_key(engine)
    with store.read(engine) as tx:
        seals = list(tx.session.scalars(select(AuditSeal).order_by(AuditSeal.id)))
    chain, since, total = GENESIS, _EPOCH, 0
    for n, block in enumerate(seals, 1):
        until = clock.parse(block.until_at)
        count = 0
        for event in _events_between(engine, since, until):
            chain = _link(mac_key, chain, event)
            count += 1
        if count != block.events or chain != block.chain:
            what = (
                f"{block.events - count} event(s) missing"
                if count < block.events
                else f"{count - block.events} event(s) added"
                if count > block.events
                else "an event was changed"
            )
            return Verification(
                False,
                len(seals),
                total,
                block.chain,
                problem=(
                    f"seal {n} (events from {clock.iso(since)} to {clock.iso(until)}) does not match: {what} "
                    "since it was sealed, or the seal itself was altered"
                ),
            )
        total += count
        since = until
    with store.read(engine) as tx:
        unsealed = tx.execute(select(Event.id).where(Event.at >= since)).all()
    return Verification(True, len(seals), total, chain, unsealed=len(unsealed))


class Sealer:
    """Seals the audit log every ``interval`` seconds in a background thread."""

    def __init__(self, engine=None, interval: float = 30.0):
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sealer:
        self._thread = threading.Thread(target=self.run, name="reviewqueue-audit-seal", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                seal(engine=self.engine)
            except Exception:  # try again next time
                log.exception("sealing the audit log failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


# --- reading --------------------------------------------------------------------------


@dataclass
class EventFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    kind: str | None = None
    queue: str | None = None
    item_id: str | None = None

    def clauses(self) -> list:
        c = []
        if self.since is not None:
            c.append(Event.at >= self.since)
        if self.until is not None:
            c.append(Event.at < self.until)
        if self.actor:
            c.append(Event.actor == self.actor)
        if self.kind:
            c.append(Event.kind.startswith(self.kind) if self.kind.endswith(".") else Event.kind == self.kind)
        if self.queue:
            c.append(Event.queue == self.queue)
        if self.item_id:
            c.append(Event.item_id == self.item_id)
        return c


def events(flt: EventFilter, *, limit: int = 100, after_id: int | None = None, engine=None) -> list[Event]:
    """Events matching ``flt``, oldest first, ``limit`` at a time after ``after_id``."""
    if not 1 <= limit <= 10_000:
        raise invalid("limit", "between 1 and 10,000")
    stmt = select(Event).where(*flt.clauses())
    if after_id is not None:
        stmt = stmt.where(Event.id > after_id)
    with store.read(engine) as tx:
        return list(tx.session.scalars(stmt.order_by(Event.id).limit(limit)))


def as_dict(event: Event) -> dict:
    return {
        "id": event.id,
        "at": clock.iso(clock.parse(event.at)),
        "actor": event.actor,
        "kind": event.kind,
        "item_id": event.item_id,
        "queue": event.queue,
        "before": event.before,
        "after": event.after,
    }


def as_csv(rows: list[Event]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "at", "actor", "kind", "item_id", "queue", "before", "after"])
    for e in rows:
        d = as_dict(e)
        writer.writerow(
            [
                d["id"],
                d["at"],
                d["actor"],
                d["kind"],
                d["item_id"] or "",
                d["queue"] or "",
                json.dumps(d["before"], ensure_ascii=False) if d["before"] is not None else "",
                json.dumps(d["after"], ensure_ascii=False) if d["after"] is not None else "",
            ]
        )
    return out.getvalue()
