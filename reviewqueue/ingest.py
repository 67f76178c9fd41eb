"""Taking model outputs in: validate, route, store. In-process entry point for apps::

    from reviewqueue import ingest
    result = ingest.submit({"queue": "support", "input": "...", "output": "...", "confidence": 0.42})

Everything is validated before anything is written, and a batch is one transaction:
all of it is stored or none of it. Re-submitting a (queue, external_id) that exists
returns the stored item (``duplicate=True``) and never creates a second one, even from
many processes at once: the database's unique index decides (``ON CONFLICT DO
NOTHING``), not a check-then-insert race.

The bulk path hands the storage layer rows of pre-serialised values for one
``executemany`` (``store.queries.insert_items``), because ORM objects cost several times
the database's own insert time (see ``bench/bench_core.py`` for the figures).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import select, text, tuple_

from . import clock, events, redaction, store, structured, toolcalls
from .errors import PayloadTooLarge, QueueNotFound, ReviewQueueError, ValidationFailed
from .ids import uuid7_many
from .models import Item, Queue
from .routing import claim_order, confidence_band, review_chance, route
from .schemas import ItemIn, SubmitResult, unstorable
from .store.queries import ItemRow, insert_items
from .vocab import EventKind, QueueKind, Route, Status

_ANALYZE_AFTER = 10_000


def _dumps(value: Any) -> str:
    # Most inputs and outputs are plain text: encode those with the C string encoder
    # directly; everything else strictly (NaN and infinity are not JSON).
    if type(value) is str:
        return encode_basestring(value)
    return _encode(value)


# One encoder for all calls: json.dumps with options builds a new one each time.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


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
    items: Iterable[ItemIn | Mapping[str, Any]], *, actor: str = "python", engine=None, on_progress=None
) -> list[SubmitResult]:
    """Route and store many outputs atomically; results come back in the same order.
    ``on_progress(n)`` is told as each chunk of ``n`` items is stored."""
    with _gc_paused():
        return _submit(
            _validate(items, single=False), actor=actor, engine=engine, single=False, on_progress=on_progress
        )


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
        except Exception:  # whatever failed (a refusal, or the database), find whose it was
            for i in indexes:
                try:
                    results[i] = submit(valid[i], actor=actor, engine=engine)
                except Exception as exc:  # this caller's alone: its savepoint is rolled back
                    results[i] = exc
    return results  # type: ignore[return-value]


#: On SQLite, batches of at least this many items are serialised and routed before the
#: write transaction begins: that work would otherwise hold the one write lock that every
#: other writer (API workers, reviewers) waits for. (PostgreSQL has no such lock.)
PREPARE_OUTSIDE_LOCK = 100


def _submit(items: list[ItemIn], *, actor: str, engine, single: bool, on_progress=None) -> list[SubmitResult]:
    if not items:
        return []
    engine = engine or store.get_engine()
    max_bytes = store.settings_of(engine).max_item_bytes
    if len(items) >= PREPARE_OUTSIDE_LOCK and store.is_sqlite(engine):
        # Queue settings read a moment before the insert: a threshold changed in between
        # applies from the next batch, as it would had this batch come a moment earlier.
        with store.read(engine) as tx:
            batch = _prepare(items, _queue_settings(tx, items, single), single, max_bytes)
        with store.write(engine) as tx:
            results = _store(tx, batch, actor, on_progress)
    else:
        with store.write(engine) as tx:
            batch = _prepare(items, _queue_settings(tx, items, single), single, max_bytes)
            results = _store(tx, batch, actor, on_progress)
    _analyze_if_big(engine, len(batch.rows))
    return results


def _queue_settings(tx: store.Tx, items: list[ItemIn], single: bool) -> dict[str, tuple]:
    """(threshold, label_thresholds, audit_rate, redactor, deadline_seconds) of every queue
    named in ``items``."""
    wanted = {item.queue for item in items}
    q = Queue.__table__.c
    queues = {
        row.name: row
        for row in tx.execute(
            select(
                q.name,
                q.threshold,
                q.label_thresholds,
                q.audit_rate,
                q.redaction,
                q.deadline_seconds,
                q.output_schema,
                q.field_thresholds,
                q.kind,
            ).where(q.name.in_(sorted(wanted)))
        )
    }
    missing = sorted(wanted - set(queues))
    if missing:
        if single:
            raise QueueNotFound(missing[0])
        where = [i for i, it in enumerate(items) if it.queue in missing]
        raise QueueNotFound(
            missing[0], f"unknown queue(s) {', '.join(map(repr, missing))} at items {where[:20]}"
        )
    # Plain values: reading row attributes once per item showed up in profiles.
    return {
        q.name: (
            q.threshold,
            q.label_thresholds,
            q.audit_rate,
            redaction.redactor(q.redaction or []),
            q.deadline_seconds,
            structured.validator(q.output_schema),
            q.field_thresholds or {},
            toolcalls.CALL if q.kind == QueueKind.TOOL_CALL else None,
        )
        for q in queues.values()
    }


class _Batch(NamedTuple):
    rows: list[ItemRow]  # new items, for store.queries.insert_items
    results: list[SubmitResult | None]  # None for a repeat within the batch
    first_of: dict[tuple[str, str], int]  # (queue, external_id) -> index of its first item
    repeats: list[tuple[int, int]]  # (index, index of the first with the same key)
    #: (index in rows, the deadline, or seconds after arrival) of items with a deadline:
    #: fixed once the transaction has read the clock (_store).
    timed: list[tuple[int, Any, int | None]]


#: Fields that name or sort things (the caller's ids, the model, the label): checked by
#: the queue's PII detectors, never redacted (a changed id would break the caller's
#: joins); an item whose identifier holds personal data is refused (422).
IDENTIFIERS = ("external_id", "model", "model_version", "predicted_label")


def _prepare(items: list[ItemIn], settings: dict[str, tuple], single: bool, limit: int) -> _Batch:
    """Serialise, check sizes (``limit`` bytes an item) and route every item; nothing is written."""
    ids = iter(uuid7_many(len(items)))
    rows: list[tuple] = []
    results: list[SubmitResult | None] = []
    first_of: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    too_large: list[dict[str, Any]] = []
    personal: list[dict[str, Any]] = []
    timed: list[tuple[int, Any, int | None]] = []
    for index, item in enumerate(items):
        if item.external_id is not None:
            key = (item.queue, item.external_id)
            if key in first_of:
                repeats.append((index, first_of[key]))
                results.append(None)
                continue
            first_of[key] = index
        (
            threshold,
            label_thresholds,
            audit_rate,
            redactor,
            queue_deadline,
            schema,
            field_thresholds,
            call_schema,
        ) = settings[item.queue]
        confidence, flags = item.confidence, None
        if schema is not None or item.field_confidence or item.output_schema or call_schema is not None:
            where = [] if single else ["items", index]
            problems = []
            for check in (call_schema, schema, structured.validator(item.output_schema)):
                if check is None:
                    continue
                if isinstance(item.output, str):
                    problems.append(
                        {
                            "loc": [*where, "output"],
                            "msg": 'this queue takes proposed tool calls: {"tool": ..., "arguments": {...}}'
                            if check is call_schema
                            else "this queue takes structured outputs: a JSON object or array, not text",
                            "type": "schema",
                        }
                    )
                    break
                problems += structured.errors(check, item.output, [*where, "output"])
            if item.field_confidence:
                problems += structured.field_problems(
                    item.output, item.field_confidence, [*where, "field_confidence"]
                )
                flags = structured.flagged(item.field_confidence, field_thresholds, threshold)
                if confidence is None:
                    confidence = min(item.field_confidence.values())
            if problems:
                raise ValidationFailed.of(problems)
        content = (
            item.input,
            item.output,
            [c.model_dump(exclude_none=True) for c in item.context],
            item.metadata,
        )
        removed = None
        if redactor is not None and any(c.data is not None for c in item.context):
            raise ValidationFailed.of(
                [
                    {
                        "loc": [*([] if single else ["items", index]), "context"],
                        "msg": "this queue redacts personal data, which a stored image or PDF cannot be "
                        "checked for: send the source's text without its data",
                        "type": "personal_data",
                    }
                ]
            )
        if redactor is not None:  # before anything is encoded, stored or checked
            removed = Counter()
            content = tuple(redactor.value(part, removed) for part in content)
            for field in IDENTIFIERS:
                value = getattr(item, field)
                kinds = redactor.detect(value) if value else []
                if kinds:
                    personal.append(
                        {
                            "loc": [field] if single else ["items", index, field],
                            "msg": f"holds personal data ({', '.join(kinds)}); the queue redacts personal data, "
                            "and an identifier cannot be redacted without breaking your joins: send one "
                            "without it",
                            "type": "personal_data",
                        }
                    )
        try:
            inp, out = _dumps(content[0]), _dumps(content[1])
            ctx = _dumps(content[2]) if content[2] else "[]"
            meta = _dumps(content[3]) if content[3] else "{}"
        except (ValueError, TypeError) as exc:
            raise ValidationFailed.of(
                [
                    {
                        "loc": [] if single else ["items", index],
                        "msg": f"not representable as JSON ({exc}); NaN and infinity are not allowed in JSON fields",
                        "type": "json_invalid",
                    }
                ]
            ) from None
        problem = next(filter(None, (unstorable(t, encoded_json=True) for t in (inp, out, ctx, meta))), None)
        if problem:
            raise ValidationFailed.of(
                [
                    {
                        "loc": [] if single else ["items", index],
                        "msg": f"{problem} (in input, output, context or metadata)",
                        "type": "value_error",
                    }
                ]
            )
        size = len(inp) + len(out) + len(ctx) + len(meta)
        if size * 4 > limit:  # cheap bound first: a character is at most 4 bytes
            size = sum(len(s.encode()) for s in (inp, out, ctx, meta))
            if size > limit:
                too_large.append(
                    {
                        "loc": [] if single else ["items", index],
                        "msg": f"item is {size} bytes; the limit is {limit} (REVIEWQUEUE_MAX_ITEM_BYTES)",
                        "type": "too_large",
                    }
                )
                continue
        audit_key = (
            item.external_id
            or hashlib.sha256(
                _dumps([item.input, item.output, item.model, item.model_version]).encode()
            ).hexdigest()
        )
        if flags:
            status, how = Status.PENDING, Route.FIELD_THRESHOLD
        else:
            status, how = route(
                queue=item.queue,
                threshold=threshold,
                label_thresholds=label_thresholds,
                audit_rate=audit_rate,
                confidence=confidence,
                predicted_label=item.predicted_label,
                key=audit_key,
            )
        item_id = next(ids)
        if status == Status.PENDING and (item.deadline or item.deadline_seconds or queue_deadline):
            # The item's own deadline over the queue's; an auto-accepted item has none.
            timed.append((len(rows), item.deadline, item.deadline_seconds or queue_deadline))
        rows.append(
            ItemRow(
                id=item_id,
                queue=item.queue,
                external_id=item.external_id,
                input=inp,
                output=out,
                confidence=float(confidence),
                predicted_label=item.predicted_label,
                model=item.model,
                model_version=item.model_version,
                context=ctx,
                metadata=meta,
                priority=item.priority,
                status=status,
                route=how,
                claim_order=claim_order(item.priority, confidence, item_id),
                review_chance=review_chance(how, audit_rate),
                confidence_band=confidence_band(confidence),
                redactions=_encode(dict(removed)) if removed else None,
                field_confidence=_encode(item.field_confidence) if item.field_confidence else None,
                flagged_fields=_encode(flags) if item.field_confidence else None,
                output_schema=_encode(item.output_schema) if item.output_schema else None,
            )
        )
        results.append(SubmitResult(item_id, item.queue, status, how))
    if personal:
        raise ValidationFailed.of(personal)
    if too_large:
        raise PayloadTooLarge(
            too_large[0]["msg"] if single else f"{len(too_large)} item(s) too large", detail=too_large
        )
    return _Batch(rows, results, first_of, repeats, timed)


def _store(tx: store.Tx, batch: _Batch, actor: str, on_progress=None) -> list[SubmitResult]:
    # The clock is read inside the write transaction after its first statement, as
    # claims and decisions read it: polls by updated_at rely on it (items.poll).
    now = clock.now()
    rows, results, first_of, repeats, timed = batch
    for index, at, seconds in timed:
        row = rows[index]
        due = at if at is not None else now + timedelta(seconds=seconds)
        rows[index] = row._replace(
            deadline_at=store.time_param(tx.dialect, due),
            claim_order=claim_order(row.priority, row.confidence, row.id, due),
        )
    if insert_items(tx, rows, now, on_progress) != len(rows):
        _mark_duplicates(tx, results, first_of)
    if on_progress is not None and repeats:
        on_progress(len(repeats))
    for index, first in repeats:
        results[index] = replace(results[first], duplicate=True)

    new = [r for r in results if not r.duplicate]
    per_queue: dict[str, Counter] = {}
    for r in new:
        per_queue.setdefault(r.queue, Counter())[r.route] += 1
    for name, routes in per_queue.items():
        events.record(
            tx,
            EventKind.ITEMS_INGESTED,
            actor,
            queue=name,
            # One new item: the event names it. More: the event counts them.
            item_id=next(r.id for r in new if r.queue == name) if sum(routes.values()) == 1 else None,
            after={"count": sum(routes.values()), "routes": dict(routes)},
            at=now,
        )
    return results  # type: ignore[return-value]


def _analyze_if_big(engine, stored: int) -> None:
    if not store.is_sqlite(engine) and stored >= _ANALYZE_AFTER:
        # Fresh statistics right away: with the stale ones PostgreSQL plans the claim
        # query as "sort every pending row", until autovacuum gets round to it.
        with store.write(engine) as tx:
            tx.execute(text("ANALYZE items"))


def _mark_duplicates(
    tx: store.Tx, results: list[SubmitResult | None], first_of: dict[tuple[str, str], int]
) -> None:
    """Some rows hit the unique index (stored before, or by a concurrent writer):
    report the stored item for those."""
    keys = list(first_of)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stmt = select(Item.id, Item.queue, Item.external_id, Item.status, Item.route).where(
            tuple_(Item.queue, Item.external_id).in_(chunk)
        )
        for item_id, queue, external_id, status, how in tx.execute(stmt):
            index = first_of[(queue, external_id)]
            if results[index].id != item_id:
                results[index] = SubmitResult(
                    id=item_id, queue=queue, status=status, route=how, duplicate=True
                )
