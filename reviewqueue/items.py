"""Reading items: one item with its decision, and filtered, keyset-paginated lists."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, cast, func, or_, select

from . import clock, store
from .errors import ItemNotFound, ValidationFailed
from .models import Item, Queue, Review
from .schemas import ID_PATTERN, DecisionOut, ItemOut, ReviewOut
from .vocab import DECIDED, DeadlineAction, Source, Status, Verdict


def to_out(item, review=None, reviews=None) -> ItemOut:
    """An ``ItemOut`` from an ``Item`` or a row of the items table, with its final
    decision (``review``) and, when given, every decision on it (``reviews``)."""
    decision = late = None
    if review is not None:
        decision = DecisionOut(
            verdict=review.verdict,
            final_output=review.final_output,
            final_label=review.final_label,
            reason=review.reason,
            comment=review.comment,
            reviewer=review.reviewer,
            decided_at=review.created_at,
            after_deadline=bool(getattr(review, "after_deadline", False)),
        )
    if item.status == Status.TIMED_OUT:
        late, decision = decision, fallback_decision(item)
    meta = item.meta if isinstance(item, Item) else item.metadata
    return ItemOut(
        id=item.id,
        queue=item.queue,
        external_id=item.external_id,
        input=item.input,
        output=item.output,
        confidence=item.confidence,
        predicted_label=item.predicted_label,
        model=item.model,
        model_version=item.model_version,
        context=item.context or [],
        metadata=meta or {},
        priority=item.priority,
        status=item.status,
        route=item.route,
        lease_holder=item.lease_holder,
        lease_expires_at=item.lease_expires_at,
        created_at=item.created_at,
        updated_at=item.updated_at,
        decision=decision,
        redactions=item.redactions,
        purged_at=item.purged_at,
        reviews_done=item.reviews_done or 0,
        agreement=item.agreement,
        reviews=None
        if reviews is None
        else [ReviewOut.model_validate(r, from_attributes=True) for r in reviews],
        deadline_at=item.deadline_at,
        deadline_action=item.deadline_action,
        late_decision=late,
        field_confidence=item.field_confidence,
        flagged_fields=item.flagged_fields,
        output_schema=getattr(item, "output_schema", None),
    )


def fallback_decision(item) -> DecisionOut | None:
    """The answer a deadline fallback gave a timed-out item (deadlines.py)."""
    verdict = DeadlineAction(item.deadline_action).verdict if item.deadline_action else None
    if verdict is None:
        return None
    kept = verdict == Verdict.APPROVE
    return DecisionOut(
        verdict=verdict,
        final_output=item.output if kept else None,
        final_label=item.predicted_label if kept else None,
        reason=None if kept else item.fallback_reason,
        reviewer="system",
        decided_at=item.decided_at or item.updated_at,
        source=Source.DEADLINE,
    )


def holder_of(item_id: str, *, engine=None):
    """``(status, queue, lease_holder, deadline_action)`` of an item, or ``None``: one
    primary-key read (the review page asks every few seconds while a deadline runs)."""
    with store.read(engine) as tx:
        return tx.execute(
            select(Item.status, Item.queue, Item.lease_holder, Item.deadline_action).where(Item.id == item_id)
        ).first()


def _final_reviews(session, items) -> dict[str, Review]:
    """``{item_id: review}``: the final decision of each item that has one."""
    ids = [i.final_review_id for i in items if i.final_review_id is not None]
    if not ids:
        return {}
    return {r.item_id: r for r in session.scalars(select(Review).where(Review.id.in_(ids)))}


def reviews_of(session, item_id: str) -> list[Review]:
    """Every decision on an item, oldest first (undone ones too, marked)."""
    return list(session.scalars(select(Review).where(Review.item_id == item_id).order_by(Review.id)))


def _full(session, item: Item) -> ItemOut:
    return to_out(item, _final_reviews(session, [item]).get(item.id), reviews_of(session, item.id))


def get(item_id: str, *, reviewer: str | None = None, engine=None) -> ItemOut:
    """One item with its final decision and every decision on it. Asked for by a
    ``reviewer`` (someone who may review it, below a lead), an item of a blind queue that
    is not final shows only that reviewer's own decisions: the others' would tell them
    what to decide (a lead's view, and the posting app's, shows them all)."""
    with store.read(engine) as tx:
        item = get_in(tx, item_id)
        if reviewer is not None and item.reviews and item.status not in DECIDED:
            queue = tx.session.get(Queue, item.queue)
            if queue is not None and not queue.show_previous_reviews:
                item.reviews = [r for r in item.reviews if r.reviewer == reviewer]
                item.agreement = None
        return item


def get_in(tx: store.Tx, item_id: str) -> ItemOut:
    """:func:`get` inside a transaction already open (it sees that transaction's writes,
    which a separate read would not while a group has not committed)."""
    item = tx.session.get(Item, item_id)
    if item is None:
        raise ItemNotFound(item_id)
    return _full(tx.session, item)


def get_by_external_id(queue: str, external_id: str, *, engine=None) -> ItemOut:
    with store.read(engine) as tx:
        item = tx.session.scalars(
            select(Item).where(Item.queue == queue, Item.external_id == external_id)
        ).first()
        if item is None:
            raise ItemNotFound(f"{queue}/{external_id}")
        return _full(tx.session, item)


#: Without ``deep``, a text search looks at the newest this many items (an index walk).
SEARCH_WINDOW = 100_000


@dataclass
class ItemFilter:
    """What Browse and ``GET /v1/items`` filter on. Every field is optional."""

    queues: list[str] | None = None
    statuses: list[str] | None = None
    verdicts: list[str] | None = None
    models: list[str] | None = None
    model_versions: list[str] | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_since: datetime | None = None
    text: str | None = None
    #: Items whose current decision is by one of these reviewers.
    reviewers: list[str] | None = None
    #: Search the text of every item, not only of the newest SEARCH_WINDOW (slow on big tables).
    deep: bool = False

    def clauses(self) -> list:
        c = []
        if self.queues:
            c.append(Item.queue.in_(self.queues))
        if self.statuses:
            c.append(Item.status.in_(self.statuses))
        if self.verdicts:
            c.append(Item.status.in_([Verdict(v).status for v in self.verdicts]))
        if self.models:
            c.append(Item.model.in_(self.models))
        if self.model_versions:
            c.append(Item.model_version.in_(self.model_versions))
        if self.min_confidence is not None:
            c.append(Item.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            c.append(Item.confidence <= self.max_confidence)
        if self.created_from is not None:
            c.append(Item.created_at >= self.created_from)
        if self.created_to is not None:
            c.append(Item.created_at < self.created_to)
        if self.updated_since is not None:
            c.append(Item.updated_at >= self.updated_since)
        if self.reviewers:
            c.append(
                Item.id.in_(
                    select(Review.item_id).where(
                        Review.reviewer.in_(self.reviewers), Review.undone_at.is_(None)
                    )
                )
            )
        if self.text and not self.deep:
            # Text cannot use an index: search the newest items only, unless asked.
            newest = select(Item.id).order_by(Item.id.desc()).offset(SEARCH_WINDOW).limit(1).scalar_subquery()
            c.append(Item.id > func.coalesce(newest, ""))
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            c.append(
                or_(
                    cast(Item.input, String).ilike(pattern, escape="\\"),
                    cast(Item.output, String).ilike(pattern, escape="\\"),
                )
            )
        return c


def encode_cursor(*values) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list):
            raise ValueError
        return values
    except Exception:
        raise ValidationFailed.of(
            [{"loc": ["cursor"], "msg": "not a cursor this server issued", "type": "value_error"}]
        ) from None


def poll(
    flt: ItemFilter, *, limit: int = 100, cursor: str | None = None, engine=None
) -> tuple[list[ItemOut], str | None]:
    """Items ordered by (updated_at, id), for apps that poll for changes: keyset
    pagination, so a page costs the same however deep it is.

    A poller moves past the newest ``updated_at`` it saw, so no change may become
    visible later with an earlier time. SQLite guarantees that (writers stamp under the
    write lock, so commit order is time order). PostgreSQL commits concurrent
    transactions in any order: there a poll shows changes only once every transaction
    that could still stamp an earlier time has ended (about a second after commit).
    """
    engine = engine or store.get_engine()
    stmt = select(Item).where(*flt.clauses()).order_by(Item.updated_at, Item.id).limit(limit + 1)
    if not store.is_sqlite(engine):
        stmt = stmt.where(Item.updated_at < store.settled_before(engine, clock.now()))
    if cursor:
        values = decode_cursor(cursor)
        try:
            after_at, after_id = clock.parse(values[0]), str(values[1])
            if not re.fullmatch(ID_PATTERN, after_id):
                raise ValueError(after_id)
        except Exception:
            raise ValidationFailed.of(
                [{"loc": ["cursor"], "msg": "malformed cursor", "type": "value_error"}]
            ) from None
        stmt = stmt.where(
            or_(Item.updated_at > after_at, and_(Item.updated_at == after_at, Item.id > after_id))
        )
    with store.read(engine) as tx:
        rows = list(tx.session.scalars(stmt))
        more = len(rows) > limit
        rows = rows[:limit]
        finals = _final_reviews(tx.session, rows)
        out = [to_out(r, finals.get(r.id)) for r in rows]
    next_cursor = encode_cursor(rows[-1].updated_at, rows[-1].id) if more else None
    return out, next_cursor


def page(flt: ItemFilter, *, limit: int = 50, offset: int = 0, engine=None) -> list[Item]:
    """One page for Browse, newest first (an index walk on the primary key)."""
    stmt = select(Item).where(*flt.clauses()).order_by(Item.id.desc()).offset(offset).limit(limit)
    with store.read(engine) as tx:
        return list(tx.session.scalars(stmt))


def deciders(item_ids: list[str], *, engine=None) -> dict[str, str]:
    """``{item_id: reviewers}`` of the decisions so far on ``item_ids`` (comma-separated)."""
    if not item_ids:
        return {}
    with store.read(engine) as tx:
        rows = tx.session.execute(
            select(Review.item_id, Review.reviewer)
            .where(Review.item_id.in_(item_ids), Review.undone_at.is_(None))
            .order_by(Review.id)
        ).all()
    out: dict[str, list[str]] = {}
    for item_id, reviewer in rows:
        out.setdefault(item_id, []).append(reviewer)
    return {i: ", ".join(names) for i, names in out.items()}


def count(flt: ItemFilter, *, engine=None, cap: int | None = None) -> int:
    """How many items match. With ``cap``, stop counting there (fast on huge tables)."""
    inner = select(Item.id).where(*flt.clauses())
    if cap is not None:
        inner = inner.limit(cap)
    with store.read(engine) as tx:
        return tx.session.scalar(select(func.count()).select_from(inner.subquery()))
