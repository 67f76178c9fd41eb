"""Taking model outputs in: validate, route, store. In-process entry point for apps::

    from reviewqueue import ingest
    result = ingest.submit({"queue": "support", "input": "...", "output": "...", "confidence": 0.42})

Everything is validated before anything is written, and a batch is one transaction:
all of it is stored or none of it. Re-submitting a (queue, external_id) that exists
returns the stored item (``duplicate=True``) and never creates a second one, even from
many processes at once: the database's unique index decides (``ON CONFLICT DO
NOTHING``), not a check-then-insert race.

The bulk path writes with the driver's ``executemany`` and pre-serialised values,
because ORM objects cost several times the database's own insert time (see
``bench/bench_core.py`` for the figures).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import replace
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import bindparam, select, tuple_

from . import clock, events
from .db import get_engine, in_group, is_sqlite, read_conn, writing
from .errors import PayloadTooLarge, QueueNotFound, ReviewQueueError, ValidationFailed
from .ids import uuid7_many
from .models import Item, Queue
from .routing import claim_order, route
from .schemas import ItemIn, SubmitResult, has_nul
from .settings import get_settings

_COLUMNS = (
    "id", "queue", "external_id", "input", "output", "confidence", "predicted_label", "model",
    "model_version", "context", "metadata", "priority", "status", "route", "claim_order",
    "created_at", "updated_at",
)
_JSON_COLUMNS = {"input", "output", "context", "metadata"}
_TIME_COLUMNS = {"created_at", "updated_at"}
_CHUNK = 5000
_QUEUES = select(Queue.__table__.c.name, Queue.__table__.c.threshold, Queue.__table__.c.label_thresholds,
                 Queue.__table__.c.audit_rate).where(Queue.__table__.c.name.in_(bindparam("names", expanding=True)))
_ANALYZE_AFTER = 10_000


def _dumps(value: Any) -> str:
    # Most inputs and outputs are plain text: encode those with the C string encoder
    # directly; everything else strictly (NaN and infinity are not JSON).
    if type(value) is str:
        return encode_basestring(value)
    return _encode(value)


# One encoder for all calls: json.dumps with options builds a new one each time.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _insert_sql(dialect: str) -> str:
    if dialect == "sqlite":
        marks = ["?"] * len(_COLUMNS)
    else:
        marks = ["%s::jsonb" if c in _JSON_COLUMNS else "%s" for c in _COLUMNS]
    return (
        f"INSERT INTO items ({', '.join(_COLUMNS)}) VALUES ({', '.join(marks)}) "
        "ON CONFLICT (queue, external_id) DO NOTHING"
    )


def _sqlite_time(dt) -> str:
    # The text format SQLAlchemy's SQLite DateTime type writes and compares against.
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def _validate(items: Iterable[ItemIn | Mapping[str, Any]], single: bool) -> list[ItemIn]:
    valid: list[ItemIn] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, ItemIn):
            valid.append(item)
            continue
        try:
            valid.append(ItemIn.model_validate(item))
        except ValidationError as exc:
            prefix = () if single else ("items", index)
            errors.extend(ValidationFailed.from_pydantic(exc, prefix=prefix).errors)
    if errors:
        raise ValidationFailed.of(errors)
    return valid


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a batch is built. A big batch keeps
    hundreds of thousands of objects alive, and each automatic collection walks all
    of them: measured, validation alone ran 3x slower with it on. Nothing here makes
    reference cycles, so reference counting still frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def submit(item: ItemIn | Mapping[str, Any], *, actor: str = "python", engine=None) -> SubmitResult:
    """Route and store one output. Raises ``ValidationFailed``, ``QueueNotFound``, ``PayloadTooLarge``."""
    return _submit(_validate([item], single=True), actor=actor, engine=engine, single=True)[0]


def submit_many(
    items: Iterable[ItemIn | Mapping[str, Any]], *, actor: str = "python", engine=None
) -> list[SubmitResult]:
    """Route and store many outputs atomically; results come back in the same order."""
    with _gc_paused():
        return _submit(_validate(items, single=False), actor=actor, engine=engine, single=False)


def submit_each(
    requests: list[tuple[ItemIn | Mapping[str, Any], str]], *, engine=None
) -> list[SubmitResult | ReviewQueueError]:
    """Independent submissions, ``(item, actor)`` each, stored together: for each, what
    :func:`submit` would have returned, or the error it would have raised. One insert
    per actor when all is well; when something is refused, each of that actor's items
    is submitted on its own to find whose it was. (Group commit, see ``groupcommit``.)"""
    results: list[SubmitResult | ReviewQueueError | None] = [None] * len(requests)
    valid: list[ItemIn | None] = []
    by_actor: dict[str, list[int]] = {}
    for index, (raw, actor) in enumerate(requests):
        try:
            valid.append(_validate([raw], single=True)[0])
        except ValidationFailed as exc:
            valid.append(None)
            results[index] = exc
            continue
        by_actor.setdefault(actor, []).append(index)
    for actor, indexes in by_actor.items():
        try:
            stored = _submit([valid[i] for i in indexes], actor=actor, engine=engine, single=False)
            for i, result in zip(indexes, stored, strict=True):
                results[i] = result
        except ReviewQueueError:
            for i in indexes:
                try:
                    results[i] = submit(valid[i], actor=actor, engine=engine)
                except ReviewQueueError as exc:
                    results[i] = exc
    return results  # type: ignore[return-value]


#: On SQLite, batches of at least this many items are serialised and routed before the
#: write transaction begins: that work would otherwise hold the one write lock that every
#: other writer (API workers, reviewers) waits for. (PostgreSQL has no such lock.)
PREPARE_OUTSIDE_LOCK = 100


def _submit(items: list[ItemIn], *, actor: str, engine, single: bool) -> list[SubmitResult]:
    if not items:
        return []
    engine = engine or get_engine()
    if len(items) >= PREPARE_OUTSIDE_LOCK and is_sqlite(engine) and not in_group(engine):
        # Queue settings read a moment before the insert: a threshold changed in between
        # applies from the next batch, as it would had this batch come a moment earlier.
        with read_conn(engine) as conn:
            batch = _prepare(items, _queue_settings(conn, items, single), single)
        with writing(engine) as conn:
            results = _store(conn, batch, actor, engine)
    else:
        with writing(engine) as conn:
            batch = _prepare(items, _queue_settings(conn, items, single), single)
            results = _store(conn, batch, actor, engine)
    _analyze_if_big(engine, len(batch.rows))
    return results


def _queue_settings(conn, items: list[ItemIn], single: bool) -> dict[str, tuple]:
    """(threshold, label_thresholds, audit_rate) of every queue named in ``items``."""
    wanted = {item.queue for item in items}
    queues = {q.name: q for q in conn.execute(_QUEUES, {"names": list(wanted)})}
    missing = sorted(wanted - set(queues))
    if missing:
        if single:
            raise QueueNotFound(missing[0])
        where = [i for i, it in enumerate(items) if it.queue in missing]
        err = QueueNotFound(missing[0])
        err.message = f"unknown queue(s) {', '.join(map(repr, missing))} at items {where[:20]}; create them first"
        err.args = (err.message,)
        err.detail = err.message
        raise err
    # Plain values: reading row attributes once per item showed up in profiles.
    return {q.name: (q.threshold, q.label_thresholds, q.audit_rate) for q in queues.values()}


class _Batch(NamedTuple):
    rows: list[tuple]                      # for the driver's executemany, less the two timestamps
    results: list[SubmitResult | None]     # None for a repeat within the batch
    first_of: dict[tuple[str, str], int]   # (queue, external_id) -> index of its first item
    repeats: list[tuple[int, int]]         # (index, index of the first with the same key)


def _prepare(items: list[ItemIn], settings: dict[str, tuple], single: bool) -> _Batch:
    """Serialise, check sizes and route every item; nothing is written."""
    limit = get_settings().max_item_bytes
    ids = iter(uuid7_many(len(items)))
    rows: list[tuple] = []
    results: list[SubmitResult | None] = []
    first_of: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    too_large: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if item.external_id is not None:
            key = (item.queue, item.external_id)
            if key in first_of:
                repeats.append((index, first_of[key]))
                results.append(None)
                continue
            first_of[key] = index
        try:
            inp, out = _dumps(item.input), _dumps(item.output)
            ctx = _dumps([c.model_dump(exclude_none=True) for c in item.context]) if item.context else "[]"
            meta = _dumps(item.metadata) if item.metadata else "{}"
        except (ValueError, TypeError) as exc:
            raise ValidationFailed.of([{
                "loc": [] if single else ["items", index],
                "msg": f"not representable as JSON ({exc}); NaN and infinity are not allowed in JSON fields",
                "type": "json_invalid",
            }]) from None
        if has_nul(inp) or has_nul(out) or has_nul(ctx) or has_nul(meta):
            raise ValidationFailed.of([{
                "loc": [] if single else ["items", index],
                "msg": "NUL characters (\\u0000) are not allowed in input, output, context or metadata",
                "type": "value_error",
            }])
        size = len(inp) + len(out) + len(ctx) + len(meta)
        if size * 4 > limit:  # cheap bound first: a character is at most 4 bytes
            size = sum(len(s.encode()) for s in (inp, out, ctx, meta))
            if size > limit:
                too_large.append({
                    "loc": [] if single else ["items", index],
                    "msg": f"item is {size} bytes; the limit is {limit} (REVIEWQUEUE_MAX_ITEM_BYTES)",
                    "type": "too_large",
                })
                continue
        threshold, label_thresholds, audit_rate = settings[item.queue]
        audit_key = item.external_id or hashlib.sha256(
            _dumps([item.input, item.output, item.model, item.model_version]).encode()
        ).hexdigest()
        status, how = route(
            queue=item.queue, threshold=threshold, label_thresholds=label_thresholds,
            audit_rate=audit_rate, confidence=item.confidence,
            predicted_label=item.predicted_label, key=audit_key,
        )
        item_id = next(ids)
        rows.append((
            item_id, item.queue, item.external_id, inp, out, float(item.confidence), item.predicted_label,
            item.model, item.model_version, ctx, meta, item.priority, status, how,
            claim_order(item.priority, item.confidence, item_id),
        ))
        results.append(SubmitResult(item_id, item.queue, status, how))
    if too_large:
        raise PayloadTooLarge(too_large[0]["msg"] if single else f"{len(too_large)} item(s) too large", detail=too_large)
    return _Batch(rows, results, first_of, repeats)


def _store(conn, batch: _Batch, actor: str, engine) -> list[SubmitResult]:
    # The clock is read inside the write transaction after its first statement, as
    # claims and decisions read it: polls by updated_at rely on it (items.poll).
    now = clock.now()
    stamp = (_sqlite_time(now) if is_sqlite(engine) else now,) * 2
    rows = [row + stamp for row in batch.rows]
    _, results, first_of, repeats = batch
    sql = _insert_sql(engine.dialect.name)
    inserted = 0
    for start in range(0, len(rows), _CHUNK):
        inserted += conn.exec_driver_sql(sql, rows[start : start + _CHUNK]).rowcount
    if inserted != len(rows):
        _mark_duplicates(conn, results, first_of)
    for index, first in repeats:
        results[index] = replace(results[first], duplicate=True)

    new = [r for r in results if not r.duplicate]
    per_queue: dict[str, Counter] = {}
    for r in new:
        per_queue.setdefault(r.queue, Counter())[r.route] += 1
    for name, routes in per_queue.items():
        events.record(
            conn, "items.ingested", actor, queue=name,
            # One new item: the event names it. More: the event counts them.
            item_id=next(r.id for r in new if r.queue == name) if sum(routes.values()) == 1 else None,
            after={"count": sum(routes.values()), "routes": dict(routes)}, at=now,
        )
    return results  # type: ignore[return-value]


def _analyze_if_big(engine, stored: int) -> None:
    if engine.dialect.name == "postgresql" and stored >= _ANALYZE_AFTER:
        # Fresh statistics right away: with the stale ones PostgreSQL plans the claim
        # query as "sort every pending row", until autovacuum gets round to it.
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE items")
            conn.commit()


def _mark_duplicates(conn, results: list[SubmitResult | None], first_of: dict[tuple[str, str], int]) -> None:
    """Some rows hit the unique index (stored before, or by a concurrent writer):
    report the stored item for those."""
    keys = list(first_of)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stmt = select(Item.id, Item.queue, Item.external_id, Item.status, Item.route).where(
            tuple_(Item.queue, Item.external_id).in_(chunk)
        )
        for item_id, queue, external_id, status, how in conn.execute(stmt):
            index = first_of[(queue, external_id)]
            if results[index].id != item_id:
                results[index] = SubmitResult(id=item_id, queue=queue, status=status, route=how, duplicate=True)
