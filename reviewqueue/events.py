"""The append-only audit log. Domain code records an event in the same transaction as
the change it describes, so the log can never disagree with the data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from . import clock
from .db import Prepared, reading
from .models import Event

_INSERT = Event.__table__.insert()
_KEYS = ["at", "actor", "kind", "item_id", "queue", "before", "after"]
_PREPARED_INSERT = Prepared(_INSERT, keys=_KEYS)


def record(
    session: Session | Connection,
    kind: str,
    actor: str,
    *,
    item_id: str | None = None,
    queue: str | None = None,
    before: Any = None,
    after: Any = None,
    at=None,
) -> None:
    values = {"at": at or clock.now(), "actor": actor, "kind": kind, "item_id": item_id, "queue": queue,
              "before": before, "after": after}
    if isinstance(session, Connection):  # the claim/decide hot path: straight to the driver
        _PREPARED_INSERT.run(session, values)
    else:  # a Core insert: no ORM object to flush or expire
        session.execute(_INSERT, [values])


def history(item_id: str, *, engine=None) -> list[Event]:
    with reading(engine) as session:
        return list(session.scalars(select(Event).where(Event.item_id == item_id).order_by(Event.id)))

