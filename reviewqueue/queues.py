"""Queues and their settings (threshold, audit rate, lease, labels, reject reasons)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from . import cache, clock, events, store
from .errors import AlreadyExists, QueueNotFound, ValidationFailed
from .models import Item, Queue, User
from .schemas import QUEUE_NAME_PATTERN, QueueOut, QueueSettings
from .vocab import WAITING, DeadlineAction, EventKind

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


def _refuse(field: str, message: str):
    return ValidationFailed(message, [{"loc": [field], "msg": message, "type": "value_error"}])


def _check_deadline(tx, queue: Queue) -> None:
    """A fallback that can be carried out: a reject names one of the queue's reasons, an
    escalation a queue that exists."""
    action = DeadlineAction(queue.on_deadline or DeadlineAction.KEEP)
    if queue.deadline_reason is not None and queue.deadline_reason not in queue.reject_reasons:
        raise _refuse(
            "deadline_reason",
            f"deadline_reason {queue.deadline_reason!r} is not one of the queue's reject reasons: "
            + ", ".join(queue.reject_reasons),
        )
    if action == DeadlineAction.REJECT and queue.deadline_reason is None:
        raise _refuse(
            "deadline_reason",
            "on_deadline=reject needs deadline_reason, one of: " + ", ".join(queue.reject_reasons),
        )
    if action == DeadlineAction.ESCALATE:
        if not queue.escalate_to:
            raise _refuse("escalate_to", "on_deadline=escalate needs escalate_to, the queue to move items to")
        if queue.escalate_to == queue.name:
            raise _refuse("escalate_to", "a queue cannot escalate to itself")
        if tx.session.get(Queue, queue.escalate_to) is None:
            raise _refuse("escalate_to", f"no such queue: {queue.escalate_to!r} (create it first)")


def _check_reviewers(tx, values: dict[str, Any]) -> None:
    """A queue's reviewers are users that exist (a typo once assigned nobody)."""
    names = values.get("reviewers") or []
    if not names:
        return
    found = set(tx.session.scalars(select(User.name).where(User.name.in_(names))))
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValidationFailed(
            f"no such user: {', '.join(unknown)} (add them first: reviewqueue user add NAME)",
            [{"loc": ["reviewers"], "msg": f"no such user: {', '.join(unknown)}", "type": "value_error"}],
        )


def create(
    name: str, settings: QueueSettings | dict | None = None, *, actor: str = "system", engine=None
) -> Queue:
    _check_name(name)
    values = _values(settings)
    with store.write(engine) as tx:
        if tx.session.get(Queue, name) is not None:
            raise AlreadyExists(f"queue {name!r} already exists")
        _check_reviewers(tx, values)
        queue = Queue(name=name, **values)
        _check_consistent(queue)
        _check_deadline(tx, queue)
        tx.session.add(queue)
        events.record(tx, EventKind.QUEUE_CREATED, actor, queue=name, after=_snapshot(queue))
    return queue


def _values(settings) -> dict[str, Any]:
    values = _settings(settings).model_dump(exclude_none=True)
    for field in ("retention_days", "deadline_seconds", "warn_seconds"):
        if values.get(field) == 0:
            values[field] = None  # kept for good; no deadline; no warning
    if values.get("output_schema") == {}:
        values["output_schema"] = None  # no schema: free text or any JSON again
    return values


def update(
    name: str,
    settings: QueueSettings | dict,
    *,
    actor: str = "system",
    why: dict[str, Any] | None = None,
    engine=None,
) -> Queue:
    """Change a queue's settings; the ``queue.updated`` event records what changed, and
    ``why`` when given (the quality advisor records its evidence there)."""
    values = _values(settings)
    with store.write(engine) as tx:
        queue = tx.session.get(Queue, name)
        if queue is None:
            raise QueueNotFound(name)
        _check_reviewers(tx, values)
        before = _snapshot(queue)
        for key, value in values.items():
            setattr(queue, key, value)
        _check_consistent(queue)
        _check_deadline(tx, queue)
        queue.updated_at = clock.now()
        after = _snapshot(queue)
        if after != before:
            events.record(
                tx,
                EventKind.QUEUE_UPDATED,
                actor,
                queue=name,
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v} | ({"why": why} if why else {}),
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


#: Age buckets of the backlog: (label, upper bound in seconds; none: older).
AGE_BUCKETS = (("< 1 h", 3600), ("1-24 h", 86_400), ("1-7 d", 7 * 86_400), ("> 7 d", None))


@dataclass(frozen=True)
class Figures:
    """What a queue's waiting work looks like, all queues at once (see :func:`figures`)."""

    #: {queue: {status: count}}
    counts: dict[str, dict[str, int]]
    #: {queue: created_at of its oldest waiting item}
    oldest: dict[str, Any]
    #: {queue: {age bucket label: waiting items}}
    ages: dict[str, dict[str, int]]


def figures(*, engine=None, max_age: float | None = None) -> Figures:
    """Counts by status, the oldest waiting item and the backlog by age of every queue,
    at most ``max_age`` seconds old (default ``REVIEWQUEUE_COUNTS_MAX_AGE``), computed in
    the background (``cache.py``) by index-only queries: no page view or request waits
    for a count over a million items."""
    engine = engine or store.get_engine()
    if max_age is None:
        max_age = store.settings_of(engine).counts_max_age
    return cache.fresh(("queue-figures", str(engine.url)), max_age, lambda: _figures(engine))


def counts(*, engine=None, max_age: float | None = None) -> dict[str, dict[str, int]]:
    """``{queue: {status: count}}`` (see :func:`figures`)."""
    return figures(engine=engine, max_age=max_age).counts


def _figures(engine) -> Figures:
    result: dict[str, dict[str, int]] = {}
    oldest: dict[str, Any] = {}
    ages: dict[str, dict[str, int]] = {}
    now = clock.now()
    with store.read(engine) as tx:
        # Index-only over ix_items_claim (queue, status, ...).
        for queue, status, n in tx.execute(
            select(Item.queue, Item.status, func.count()).group_by(Item.queue, Item.status)
        ):
            result.setdefault(queue, {})[status] = n
        # Per waiting (queue, status): the oldest item is one seek on ix_items_waiting
        # (queue, status, created_at), and each age bucket one range count on it.
        for queue, statuses in result.items():
            waiting = [s for s in statuses if s in WAITING]
            times = []
            for status in waiting:
                where = (Item.queue == queue, Item.status == status)
                first = tx.execute(select(func.min(Item.created_at)).where(*where)).scalar()
                if first is not None:
                    times.append(clock.parse(first))
                bucket = ages.setdefault(queue, dict.fromkeys(label for label, _ in AGE_BUCKETS))
                newer = now
                for label, seconds in AGE_BUCKETS:
                    older = now - timedelta(seconds=seconds) if seconds else None
                    bound = [Item.created_at <= newer] + ([Item.created_at > older] if older else [])
                    n = tx.execute(select(func.count()).where(*where, *bound)).scalar()
                    bucket[label] = (bucket[label] or 0) + n
                    newer = older
            if times:
                oldest[queue] = min(times)
    return Figures(result, oldest, {q: {k: v or 0 for k, v in b.items()} for q, b in ages.items()})


def overview(*, engine=None, only: list[str] | None = None, max_age: float | None = None) -> list[QueueOut]:
    """Every queue with its settings, counts by status and oldest waiting item (the
    figures at most ``max_age`` seconds old, see :func:`counts`)."""
    with store.read(engine) as tx:
        stmt = select(Queue).order_by(Queue.name)
        if only is not None:
            stmt = stmt.where(Queue.name.in_(only))
        queues = list(tx.session.scalars(stmt))
    now = figures(engine=engine, max_age=max_age)
    all_counts, oldest = now.counts, now.oldest
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
