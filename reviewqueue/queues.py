"""Queues and their settings (threshold, audit rate, lease, labels, reject reasons)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from . import clock, events, store
from .errors import AlreadyExists, QueueNotFound, ValidationFailed
from .models import Item, Queue
from .schemas import QUEUE_NAME_PATTERN, QueueOut, QueueSettings
from .vocab import WAITING, EventKind

SETTINGS_FIELDS = tuple(QueueSettings.model_fields)


def _settings(value: QueueSettings | dict[str, Any] | None) -> QueueSettings:
    if isinstance(value, QueueSettings):
        return value
    try:
        return QueueSettings.model_validate(value or {})
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def _check_name(name: str) -> None:
    if not re.fullmatch(QUEUE_NAME_PATTERN, name or ""):
        raise ValidationFailed(
            f"queue name {name!r} is not valid: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
            [{"loc": ["name"], "msg": "must match " + QUEUE_NAME_PATTERN, "type": "pattern"}],
        )


def _snapshot(queue: Queue) -> dict[str, Any]:
    return {f: getattr(queue, f) for f in SETTINGS_FIELDS}


def _check_consistent(queue: Queue) -> None:
    unknown = sorted(set(queue.label_thresholds) - set(queue.labels)) if queue.labels else []
    if unknown:
        raise ValidationFailed(
            f"label_thresholds names labels the queue does not have: {', '.join(unknown)}",
            [
                {
                    "loc": ["label_thresholds"],
                    "msg": "unknown labels: " + ", ".join(unknown),
                    "type": "value_error",
                }
            ],
        )


def create(
    name: str, settings: QueueSettings | dict | None = None, *, actor: str = "system", engine=None
) -> Queue:
    _check_name(name)
    values = _settings(settings).model_dump(exclude_none=True)
    with store.write(engine) as tx:
        if tx.session.get(Queue, name) is not None:
            raise AlreadyExists(f"queue {name!r} already exists")
        queue = Queue(name=name, **values)
        _check_consistent(queue)
        tx.session.add(queue)
        events.record(tx, EventKind.QUEUE_CREATED, actor, queue=name, after=_snapshot(queue))
    return queue


def update(name: str, settings: QueueSettings | dict, *, actor: str = "system", engine=None) -> Queue:
    values = _settings(settings).model_dump(exclude_none=True)
    with store.write(engine) as tx:
        queue = tx.session.get(Queue, name)
        if queue is None:
            raise QueueNotFound(name)
        before = _snapshot(queue)
        for key, value in values.items():
            setattr(queue, key, value)
        _check_consistent(queue)
        queue.updated_at = clock.now()
        after = _snapshot(queue)
        if after != before:
            events.record(
                tx,
                EventKind.QUEUE_UPDATED,
                actor,
                queue=name,
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v},
            )
    return queue


def upsert(
    name: str, settings: QueueSettings | dict, *, actor: str = "system", engine=None
) -> tuple[Queue, bool]:
    """Create or update; returns ``(queue, created)``."""
    try:
        return create(name, settings, actor=actor, engine=engine), True
    except AlreadyExists:
        return update(name, settings, actor=actor, engine=engine), False


def get(name: str, *, engine=None) -> Queue:
    with store.read(engine) as tx:
        queue = tx.session.get(Queue, name)
    if queue is None:
        raise QueueNotFound(name)
    return queue


def names(*, engine=None) -> list[str]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(Queue.name).order_by(Queue.name)))


def counts(*, engine=None, only: list[str] | None = None) -> dict[str, dict[str, int]]:
    """``{queue: {status: count}}``, one grouped query over the claim index."""
    stmt = select(Item.queue, Item.status, func.count()).group_by(Item.queue, Item.status)
    if only is not None:
        stmt = stmt.where(Item.queue.in_(only))
    result: dict[str, dict[str, int]] = {}
    with store.read(engine) as tx:
        for queue, status, n in tx.execute(stmt):
            result.setdefault(queue, {})[status] = n
    return result


def oldest_pending(*, engine=None) -> dict[str, Any]:
    stmt = (
        select(Item.queue, func.min(Item.created_at))
        .where(Item.status.in_(sorted(WAITING)))
        .group_by(Item.queue)
    )
    with store.read(engine) as tx:
        return {q: clock.parse(t) if t else None for q, t in tx.execute(stmt)}


def overview(*, engine=None, only: list[str] | None = None) -> list[QueueOut]:
    """Every queue with its settings, counts by status and oldest waiting item."""
    with store.read(engine) as tx:
        stmt = select(Queue).order_by(Queue.name)
        if only is not None:
            stmt = stmt.where(Queue.name.in_(only))
        queues = list(tx.session.scalars(stmt))
    all_counts = counts(engine=engine, only=only)
    oldest = oldest_pending(engine=engine)
    return [
        QueueOut(
            name=q.name,
            description=q.description,
            **{f: getattr(q, f) for f in SETTINGS_FIELDS if f != "description"},
            counts=all_counts.get(q.name, {}),
            oldest_pending_at=oldest.get(q.name),
        )
        for q in queues
    ]
