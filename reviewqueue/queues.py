"""Queues and their settings (threshold, audit rate, lease, labels, reject reasons)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from . import cache, clock, events, store
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
    values = _values(settings)
    with store.write(engine) as tx:
        if tx.session.get(Queue, name) is not None:
            raise AlreadyExists(f"queue {name!r} already exists")
        queue = Queue(name=name, **values)
        _check_consistent(queue)
        tx.session.add(queue)
        events.record(tx, EventKind.QUEUE_CREATED, actor, queue=name, after=_snapshot(queue))
    return queue


def _values(settings) -> dict[str, Any]:
    values = _settings(settings).model_dump(exclude_none=True)
    if values.get("retention_days") == 0:
        values["retention_days"] = None  # kept for good
    return values


def update(name: str, settings: QueueSettings | dict, *, actor: str = "system", engine=None) -> Queue:
    values = _values(settings)
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


def counts(*, engine=None, max_age: float | None = None) -> dict[str, dict[str, int]]:
    """``{queue: {status: count}}``: one grouped, index-only count over the claim
    index, at most ``max_age`` seconds old (default ``REVIEWQUEUE_COUNTS_MAX_AGE``)."""
    return _figures(engine, max_age)[0]


def oldest_waiting(*, engine=None, max_age: float | None = None) -> dict[str, Any]:
    """``{queue: created_at of its oldest waiting item}``, as old as :func:`counts`."""
    return _figures(engine, max_age)[1]


def _figures(engine, max_age: float | None):
    engine = engine or store.get_engine()
    if max_age is None:
        max_age = store.settings_of(engine).counts_max_age
    return cache.fresh(("queue-figures", str(engine.url)), max_age, lambda: _count(engine))


def _count(engine) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    result: dict[str, dict[str, int]] = {}
    oldest: dict[str, Any] = {}
    with store.read(engine) as tx:
        for queue, status, n in tx.execute(
            select(Item.queue, Item.status, func.count()).group_by(Item.queue, Item.status)
        ):
            result.setdefault(queue, {})[status] = n
        # The oldest waiting item of each queue: one index seek per (queue, status)
        # on ix_items_waiting, not a scan of the backlog.
        for queue, statuses in result.items():
            times = [
                tx.execute(
                    select(func.min(Item.created_at)).where(Item.queue == queue, Item.status == status)
                ).scalar()
                for status in statuses
                if status in WAITING
            ]
            times = [clock.parse(t) for t in times if t is not None]
            if times:
                oldest[queue] = min(times)
    return result, oldest


def overview(*, engine=None, only: list[str] | None = None, max_age: float | None = None) -> list[QueueOut]:
    """Every queue with its settings, counts by status and oldest waiting item (the
    figures at most ``max_age`` seconds old, see :func:`counts`)."""
    with store.read(engine) as tx:
        stmt = select(Queue).order_by(Queue.name)
        if only is not None:
            stmt = stmt.where(Queue.name.in_(only))
        queues = list(tx.session.scalars(stmt))
    all_counts, oldest = _figures(engine, max_age)
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
