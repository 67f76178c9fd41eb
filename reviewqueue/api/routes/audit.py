"""The audit log over HTTP (admins): every change, cursor-paged, oldest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ... import audit
from ...schemas import ID_PATTERN, QUEUE_NAME_PATTERN, Moment, Text
from ...vocab import Scope
from ..deps import Caller, Engine
from ..errors import V1_ERRORS

router = APIRouter(prefix="/v1", tags=["audit"], responses=V1_ERRORS)


class EventOut(BaseModel):
    id: int
    at: str
    actor: str
    kind: str
    item_id: str | None
    queue: str | None
    before: Any = None
    after: Any = None


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: int | None


@router.get("/events", response_model=EventPage)
def list_events(
    who: Caller,
    engine: Engine,
    since: Moment | None = None,
    until: Moment | None = None,
    actor: Annotated[Text | None, Query(max_length=256)] = None,
    kind: Annotated[Text | None, Query(max_length=64)] = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
    item_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="next_cursor of the previous page")
    ] = None,
):
    """The audit log, oldest first. A token limited to some queues sees only their items'
    and queues' events; account, token and sign-in events (no queue) only an unlimited
    admin token sees."""
    who.require(Scope.ADMIN)
    if queue:
        who.require_queue(queue)
    flt = audit.EventFilter(
        since=since,
        until=until,
        actor=actor,
        kind=kind,
        queue=queue,
        item_id=item_id,
        queues=who.allowed_queues(),
    )
    rows = audit.events(flt, limit=limit, after_id=cursor, engine=engine)
    return {
        "events": [audit.as_dict(e) for e in rows],
        "next_cursor": rows[-1].id if len(rows) == limit else None,
    }
