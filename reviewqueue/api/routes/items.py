"""Items: post model outputs (one, or a batch) and read them back."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ... import ingest, items, retention, store, waiting
from ...items import ItemFilter
from ...schemas import QUEUE_NAME_PATTERN, ItemIn, ItemOut, Moment, SubmitResult
from ...vocab import FINAL, Role, Scope, Status
from ..deps import Caller, Engine, ItemId, writes_of
from ..errors import V1_ERRORS

router = APIRouter(prefix="/v1/items", tags=["items"], responses=V1_ERRORS)


#: ``?wait=``: a long poll, answered as soon as the item is final.
WaitSeconds = Annotated[
    float,
    Query(
        ge=0,
        le=waiting.MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Seconds to wait for the item to be final (decided, auto-accepted or decided by "
        "its deadline fallback), at most 60: answered as soon as it is, or at the end of the wait "
        "with its state then.",
    ),
]


class BatchIn(BaseModel):
    items: list[ItemIn] = Field(
        min_length=1, max_length=1000, description="Up to 1,000 items, stored atomically."
    )


class BatchOut(BaseModel):
    results: list[SubmitResult]


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None


@router.post(
    "",
    response_model=SubmitResult,
    status_code=201,
    tags=["ingest"],
    responses={200: {"description": "Seen before: the stored item, with duplicate=true"}},
)
async def post_item(body: ItemIn, who: Caller, request: Request):
    who.require(Scope.INGEST)
    who.require_queue(body.queue)
    # Single posts arriving together are stored with one insert (ingest.submit_each).
    result = await writes_of(request).run_combined(request.app.state.submit_each, (body, who.audit_actor))
    return JSONResponse(result.as_dict(), status_code=200 if result.duplicate else 201)


@router.post("/batch", response_model=BatchOut, tags=["ingest"])
def post_batch(body: BatchIn, who: Caller, engine: Engine):
    who.require(Scope.INGEST)
    for name in {i.queue for i in body.items}:
        who.require_queue(name)
    results = ingest.submit_many(body.items, actor=who.audit_actor, engine=engine)
    return JSONResponse({"results": [r.as_dict() for r in results]})


def _read(item_id: str, who, engine) -> ItemOut:
    # A reviewer's own token sees a blind queue's item as the review page shows it.
    reviewing_as = who.user if who.user and not (who.role and Role(who.role).at_least(Role.LEAD)) else None
    item = items.get(item_id, reviewer=reviewing_as, engine=engine)
    who.require_queue(item.queue)
    return item


@router.get("/{item_id}", response_model=ItemOut)
async def get_item(
    item_id: ItemId,
    who: Caller,
    engine: Engine,
    request: Request,
    wait: WaitSeconds = 0,
):
    who.require(Scope.READ)
    return await read_final(item_id, who, engine, request, wait)


async def read_final(item_id: str, who, engine, request: Request, wait: float) -> ItemOut:
    """The item, once final or after ``wait`` seconds (GET /v1/items/{id}?wait=)."""
    if not wait:
        return await run_in_threadpool(_read, item_id, who, engine)
    # Waiting holds no database connection and no thread: a future the process's one
    # notifier sets (waiting.py).
    with request.app.state.waiting.waiter(item_id) as told:
        item = await run_in_threadpool(_read, item_id, who, engine)
        if item.status in FINAL:
            return item
        await waiting.until(told, wait)
    # The request's deadline for a database connection counted from its arrival; the
    # read after waiting gets one of its own (else every woken waiter would be "busy").
    store.request_deadline.set(time.monotonic() + store.settings_of(engine).db_pool_timeout)
    return await run_in_threadpool(_read, item_id, who, engine)


class Erased(BaseModel):
    id: str
    erased: bool


@router.delete("/{item_id}", response_model=Erased)
def erase_item(item_id: ItemId, who: Caller, engine: Engine):
    """Erase the item's content everywhere it is stored (a data subject's request)."""
    who.require(Scope.ADMIN)
    who.require_queue(items.get(item_id, engine=engine).queue)
    return {"id": retention.erase(item_id, actor=who.audit_actor, engine=engine), "erased": True}


@router.get("", response_model=ItemPage)
def list_items(
    who: Caller,
    engine: Engine,
    queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
    status: Status | None = None,
    updated_since: Moment | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
):
    who.require(Scope.READ)
    if queue:
        who.require_queue(queue)
    flt = ItemFilter(
        queues=[queue] if queue else who.allowed_queues(),
        statuses=[status] if status else None,
        updated_since=updated_since,
    )
    page, next_cursor = items.poll(flt, limit=limit, cursor=cursor, engine=engine)
    return {"items": page, "next_cursor": next_cursor}
