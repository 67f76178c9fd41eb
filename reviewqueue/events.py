"""The append-only audit log. Domain code records an event in the same unit of work as the
change it describes, so the log can never disagree with the data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from . import clock, store
from .models import Event
from .store import queries
from .vocab import EventKind


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
    queries.INSERT_EVENT.run(
        tx,
        {
            "at": at or clock.now(),
            "actor": actor,
            "kind": kind,
            "item_id": item_id,
            "queue": queue,
            "before": before,
            "after": after,
        },
    )


def history(item_id: str, *, engine=None) -> list[Event]:
    with store.read(engine) as tx:
        return list(tx.session.scalars(select(Event).where(Event.item_id == item_id).order_by(Event.id)))
