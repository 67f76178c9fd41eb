"""The audit trail: every change of state is an event (``events.py``); here the events are
read, exported, and sealed into a hash chain nobody can quietly edit.

Sealing happens in blocks, off the request path (a background job led by one process,
``jobs.py``, or ``reviewqueue audit seal``), so a claim or a decision pays nothing for
it. Seals are numbered 1, 2, 3 ... without gaps; seal *n* covers the events whose
*seal key* falls in ``[upto_(n-1), upto_n)``, in key order, continuing the chain:

    chain_n = HMAC-SHA256(server key, chain_(n-1) || canonical(event_n))

The seal key is the database's order, never a host's clock: on PostgreSQL the id of
the transaction that wrote the event (``events.seq``, a column default), and ``upto``
is the oldest transaction still running, below which every transaction has ended; on
SQLite, where writers take turns, the row id, read under the write lock. (Sealing by
time once failed for good when one API host ran 2.5 s behind: its events landed in a
block already sealed.) Each seal also carries a MAC of its own fields.

The server key (``keys.py``) is not in the database. ``verify`` recomputes every block
and reports the first that does not match: an event edited, deleted or slipped in
afterwards, a seal altered or missing; and events that exist outside every range. The
newest chain value (``head``) can be written down elsewhere to anchor the whole log.

Seals made before revision 0010 covered the events stamped before a moment
(``until_at``); they are verified that way, over the events they covered (``seq`` 0).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from . import clock, cluster, jobs, keys, store
from . import events as event_log
from .errors import ReviewQueueError, invalid
from .models import AuditSeal, Event
from .store import queries

log = logging.getLogger(__name__)
GENESIS = "0" * 64


class Tampered(ReviewQueueError):
    """The audit log or its seals were changed behind reviewqueue's back."""

    status_code = 500


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 5000


def _when(value) -> str:
    """An event's time as it is sealed (ISO UTC); what cannot be read as a time is
    sealed as the text it is, so it can neither hide nor crash the check."""
    try:
        return clock.iso(clock.parse(value))
    except (TypeError, ValueError):
        return f"unreadable:{value!r}"


def canonical(event) -> bytes:
    """The bytes an event is sealed as: every field, in a fixed form."""
    at = getattr(event, "at_raw", None)
    return json.dumps(
        [
            event.id,
            _when(at if at is not None else getattr(event, "at", None)),
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


def _mac_key(engine, key: bytes | None = None) -> bytes:
    key = key or keys.key(store.settings_of(engine))
    return hashlib.sha256(b"reviewqueue-audit:" + base64.urlsafe_b64decode(key)).digest()


def _keyring(engine) -> dict[str, bytes]:
    """The server key and the keys retired by rotations, by fingerprint."""
    settings = store.settings_of(engine)
    return {cluster.fingerprint(k): k for k in (*keys.retired(settings), keys.key(settings))}


def _seal_mac(mac_key: bytes, number: int, upto, events: int, chain: str, previous_chain: str) -> str:
    fields = f"seal|{number}|{upto}|{events}|{chain}|{previous_chain}".encode()
    return hmac.new(mac_key, fields, hashlib.sha256).hexdigest()


def _paged(engine, query, params: dict, after: dict, cursor_of):
    """``query``'s rows, :data:`_CHUNK` at a time: each page continues after the last
    row of the one before (``cursor_of(row)`` gives the next ``after`` parameters)."""
    while True:
        with store.read(engine) as tx:
            rows = query.rows(tx, {**params, **after, "limit": _CHUNK})
        yield from rows
        if len(rows) < _CHUNK:
            return
        after = cursor_of(rows[-1])


def _by_key(engine, since: int, upto: int):
    """Events with a seal key in ``[since, upto)``, in key order, streamed."""
    return _paged(
        engine,
        queries.EVENTS_BY_KEY,
        {"since": since, "upto": upto},
        {"after_key": since - 1, "after_id": -1},
        lambda row: {"after_key": row.key, "after_id": row.id},
    )


def _legacy(engine, since: datetime, until: datetime):
    """Events a seal of before revision 0010 covered, in ``(at, id)`` order."""
    return _paged(
        engine,
        queries.LEGACY_EVENTS,
        {"since_at": since, "until_at": until},
        {"after_at": since, "after_id": -1},
        lambda row: {"after_at": clock.parse(row.at_raw), "after_id": row.id},
    )


def _seals(engine) -> list[AuditSeal]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(AuditSeal).order_by(AuditSeal.number, AuditSeal.id)))


def _key_start(engine) -> int:
    return queries.SEAL_KEY_START[engine.dialect.name]


_KEY_END = 2**62


def _bound(engine) -> int:
    """The seal key below which every event has committed."""
    if store.is_sqlite(engine):
        with store.write(engine) as tx:  # no writer in flight
            return queries.seal_bound(tx)
    with store.read(engine) as tx:
        return queries.seal_bound(tx)


def _event_ok(event_key: bytes, event) -> bool:
    """Whether the event carries the MAC reviewqueue wrote with it (events.py)."""
    nonce, _, mac = (event.mac or "").partition(":")
    if not nonce or not mac:
        return False
    expected = event_log.fields_mac(
        event_key,
        nonce,
        _when(event.at_raw),
        event.actor,
        event.kind,
        event.item_id,
        event.queue,
        event.before,
        event.after,
    )
    return hmac.compare_digest(expected, mac)


def _describe(event) -> str:
    return f"event {event.id} ({event.kind} by {event.actor} at {_when(event.at_raw)})"


# --- the anchor: each seal's head, outside the database --------------------------------


@dataclass
class Anchor:
    database: str
    number: int
    upto: int
    events: int
    chain: str


def anchor_path(engine) -> Path:
    """Where this host keeps its anchor file: ``REVIEWQUEUE_AUDIT_ANCHOR_FILE``, else
    beside the SQLite file, else ``data/audit-anchor.log``."""
    configured = store.settings_of(engine).audit_anchor_file
    if configured:
        return Path(configured)
    if store.is_sqlite(engine) and engine.url.database not in (None, "", ":memory:"):
        return Path(engine.url.database + ".audit-anchor")
    return Path("data/audit-anchor.log")


def anchors(engine) -> list[Anchor]:
    """The seals this host anchored, oldest first (lines it cannot read are skipped)."""
    path = anchor_path(engine)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 6 or parts[0] != "seal":
            continue
        try:
            database, number, upto, count, chain = (
                parts[1],
                int(parts[2]),
                int(parts[3]),
                int(parts[4]),
                parts[5],
            )
        except ValueError:
            continue
        out.append(Anchor(database, number, upto, count, chain))
    return out


def _anchor(engine, database: str, seal: AuditSeal) -> None:
    path = anchor_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"seal {database} {seal.number} {seal.upto} {seal.events} {seal.chain}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("audit seal %s: head %s (%s events)", seal.number, seal.chain, seal.events)


def _check_anchors(engine, database: str, seals: list[AuditSeal]) -> str | None:
    """What is wrong between the database's seals and this host's anchor file, if anything."""
    by_number = {s.number: s for s in seals}
    for a in anchors(engine):
        if a.database != database:
            return (
                f"the anchor file {anchor_path(engine)} was written for another database ({a.database}; this "
                f"one is {database}): if this database was made anew, move that file away"
            )
        sealed = by_number.get(a.number)
        if sealed is None:
            return (
                f"seal {a.number} is in the anchor file {anchor_path(engine)} but not in the database: seals "
                "were deleted"
            )
        if (sealed.upto, sealed.events, sealed.chain) != (a.upto, a.events, a.chain):
            return (
                f"seal {a.number} in the database differs from the one in the anchor file "
                f"{anchor_path(engine)}: the chain was rewritten"
            )
    return None


def seal(*, engine=None) -> AuditSeal | None:
    """Seal the events that have committed since the last seal; returns the new seal
    (or ``None`` when there was nothing new). Raises :class:`Tampered`, sealing
    nothing, when the chain so far does not match this host's anchor file or an event
    to seal does not carry the server key's MAC: sealing must never bless an edit."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    mac_key, event_key = _mac_key(engine), event_log.mac_key(settings)
    database = cluster.database_id(engine=engine)
    seals = _seals(engine)
    problem = _check_anchors(engine, database, seals)
    if problem:
        raise Tampered(f"not sealing: {problem}")
    previous = seals[-1] if seals else None
    since = previous.upto if previous is not None and previous.upto is not None else _key_start(engine)
    chain = previous_chain = previous.chain if previous else GENESIS
    upto = _bound(engine)
    if upto <= since:
        return None
    count, first_at, last_at = 0, None, None
    for event in _by_key(engine, since, upto):
        if not _event_ok(event_key, event):
            raise Tampered(
                f"not sealing: {_describe(event)} does not carry the server key's MAC; it was written or "
                "edited behind reviewqueue's back (reviewqueue audit verify)"
            )
        chain = _link(mac_key, chain, event)
        count += 1
        at = clock.parse(event.at_raw)
        first_at = at if first_at is None else min(first_at, at)
        last_at = at if last_at is None else max(last_at, at)
    if count == 0:
        return None
    with store.read(engine) as tx:
        copy = queries.DUPLICATE_IN_RANGE.first(tx, {"since": since, "upto": upto})
    if copy is not None:
        raise Tampered(f"not sealing: event {copy.id} is a copy of another event (the same MAC)")
    number = (previous.number or 0) + 1 if previous else 1
    with store.write(engine) as tx:
        queries.lock_key(tx, "audit-seal")
        latest = tx.session.scalars(select(AuditSeal).order_by(AuditSeal.number.desc()).limit(1)).first()
        if (latest.number if latest else None) != (previous.number if previous else None):
            return None  # another process sealed meanwhile; its seal stands
        new = AuditSeal(
            number=number,
            upto=upto,
            until_at=clock.now(),
            events=count,
            chain=chain,
            first_at=first_at,
            last_at=last_at,
            mac=_seal_mac(mac_key, number, upto, count, chain, previous_chain),
            sealed_at=clock.now(),
            key_fingerprint=cluster.fingerprint(keys.key(settings)),
        )
        tx.session.add(new)
    _anchor(engine, database, new)
    return new


#: Events not sealed this long after they were written fail ``verify``: the sealer
#: runs every 30 seconds, so they were hidden from it (seals deleted) or it is down.
UNSEALED_GRACE = timedelta(minutes=10)


@dataclass
class Verification:
    ok: bool
    seals: int
    events: int
    head: str
    problem: str | None = None
    #: Events recorded since the last seal (not yet covered).
    unsealed: int = 0
    #: Seals this host's anchor file confirms.
    anchored: int = 0


def verify(*, engine=None) -> Verification:
    """Check the whole log; the first thing that does not hold is reported: a block whose
    events do not recompute to its seal, a seal altered or missing, a seal that differs
    from this host's anchor file, an event without the server key's MAC (sealed or
    not), events outside every range, or events left unsealed too long."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    current = keys.key(settings)
    ring = _keyring(engine)
    seals = _seals(engine)
    chain, since_at, since_key, total = GENESIS, _EPOCH, _key_start(engine), 0

    def failed(problem: str) -> Verification:
        return Verification(False, len(seals), total, seals[-1].chain if seals else GENESIS, problem=problem)

    for n, block in enumerate(seals, 1):
        if block.number != n:
            return failed(
                f"seal {n} is missing (the next one is numbered {block.number}): seals were deleted or renumbered"
            )
        previous_chain = chain
        count = 0
        # Each seal with the key it was made with: a rotation retires keys (rotation.py).
        block_key = ring.get(block.key_fingerprint) if block.key_fingerprint else current
        if block_key is None:
            return failed(
                f"seal {n} was made with the server key of fingerprint {block.key_fingerprint}, which this host "
                "does not have: add that retired key to REVIEWQUEUE_SECRET_KEYS_RETIRED (docs/deployment.md, "
                "Rotating the key)"
            )
        mac_key = _mac_key(engine, block_key)
        event_key = event_log.event_key_of(block_key)
        if block.upto is None:  # sealed by time, before revision 0010
            until = clock.parse(block.until_at)
            rows = _legacy(engine, since_at, until)
            where = f"events from {clock.iso(since_at)} to {clock.iso(until)}"
            since_at = until
        else:
            rows = _by_key(engine, since_key, block.upto)
            where = f"events {since_key} to {block.upto} in the database's order"
            since_key = block.upto
        for event in rows:
            if block.upto is not None and not _event_ok(event_key, event):
                return failed(
                    f"{_describe(event)}, under seal {n}, does not carry the server key's MAC: it was edited or "
                    "slipped in behind reviewqueue's back"
                )
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
            return failed(
                f"seal {n} ({where}) does not match: {what} since it was sealed, or the seal was altered"
            )
        if block.upto is not None and block.mac != _seal_mac(
            mac_key, block.number, block.upto, block.events, block.chain, previous_chain
        ):
            return failed(f"seal {n} ({where}) was altered: its fields do not carry the server key's MAC")
        total += count
    problem = _check_anchors(engine, cluster.database_id(engine=engine), seals)
    if problem:
        return failed(problem)
    event_key = event_log.mac_key(settings)  # what is not sealed yet: the current key
    unsealed, oldest = 0, None
    for event in _by_key(engine, since_key, _KEY_END):
        if not _event_ok(event_key, event):
            return failed(
                f"{_describe(event)}, not sealed yet, does not carry the server key's MAC: it was written or "
                "edited behind reviewqueue's back"
            )
        unsealed += 1
        at = clock.parse(event.at_raw)
        oldest = at if oldest is None else min(oldest, at)
    with store.read(engine) as tx:
        everything = queries.ALL_EVENTS.first(tx).n
        twice = queries.DUPLICATE_EVENT_MAC.first(tx)
    if everything != total + unsealed:
        return failed(
            f"{everything - total - unsealed} event(s) lie outside every sealed range and the unsealed tail "
            "(their order key or time was edited)"
        )
    if twice is not None:
        return failed(f"event {twice.id} is a copy of another event (the same MAC): it was slipped in")
    if oldest is not None and oldest < clock.now() - UNSEALED_GRACE:
        return failed(
            f"{unsealed} event(s) are not sealed, the oldest from {clock.iso(oldest)}: the sealer runs every "
            "30 seconds, so either it is not running (start reviewqueue api or worker, or run "
            "reviewqueue audit seal) or the seals that covered them were deleted"
        )
    anchored = len(anchors(engine))
    return Verification(True, len(seals), total, chain, unsealed=unsealed, anchored=anchored)


def seal_job(*, interval: float = 30.0) -> jobs.Job:
    """Sealing as a background job led by one process of the deployment."""

    def run(engine) -> bool:
        try:
            seal(engine=engine)
        except Tampered as exc:
            log.error("AUDIT LOG TAMPERED: %s", exc)
        return False

    return jobs.Job("audit-seal", run, interval)


# --- reading --------------------------------------------------------------------------


@dataclass
class EventFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    kind: str | None = None
    queue: str | None = None
    item_id: str | None = None
    #: Only events of these queues (none: every event, those of no queue included).
    queues: list[str] | None = None

    def clauses(self) -> list:
        c = []
        if self.queues is not None:
            c.append(Event.queue.in_(self.queues))
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
