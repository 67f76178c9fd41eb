"""Reviewing over HTTP: claim the next item, release it, decide it. The caller acts as
its review token's user. Writes go through the app's group commit (``writes_of``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, StringConstraints

from ... import items, review, tokens
from ...schemas import ID_PATTERN, AdjudicationIn, DecisionIn, ItemOut
from ...vocab import Role, Scope
from ..deps import Caller, ItemId, QueueName, writes_of
from ..errors import V1_ERRORS

router = APIRouter(prefix="/v1", tags=["review"], responses=V1_ERRORS)


def _json(model: BaseModel) -> Response:
    # These routes return a model the domain already validated: serialise it once,
    # instead of FastAPI validating it again against the response_model.
    return Response(model.model_dump_json(), media_type="application/json")


def _queue_checked(who: tokens.Principal, item_id: str, fn, *args, engine, **kwargs):
    """``fn`` after checking that a queue-limited token may act on the item's queue."""
    if who.queues:
        who.require_queue(items.get(item_id, engine=engine).queue)
    return fn(*args, engine=engine, **kwargs)


@router.post(
    "/queues/{name}/claim", response_model=ItemOut, responses={204: {"description": "Nothing is waiting"}}
)
async def claim(
    name: QueueName,
    who: Caller,
    request: Request,
    skip: list[Annotated[str, StringConstraints(pattern=ID_PATTERN)]] = Query(
        [], max_length=500, description="Item ids to pass over (the ones you skipped)."
    ),
):
    who.require(Scope.REVIEW)
    who.require_queue(name)
    writes = writes_of(request)
    item = await writes.run(review.claim_next, name, who.actor, exclude=skip, engine=writes.engine)
    if item is None:
        return Response(status_code=204)
    return _json(item)


@router.post("/items/{item_id}/release", response_model=ItemOut)
async def release(item_id: ItemId, who: Caller, request: Request):
    who.require(Scope.REVIEW)
    writes = writes_of(request)
    return _json(
        await writes.run(
            _queue_checked, who, item_id, review.release, item_id, who.actor, engine=writes.engine
        )
    )


@router.post("/items/{item_id}/decision", response_model=ItemOut)
async def decide(item_id: ItemId, body: DecisionIn, who: Caller, request: Request):
    who.require(Scope.REVIEW)
    writes = writes_of(request)
    return _json(
        await writes.run(
            _queue_checked, who, item_id, review.decide_item, item_id, who.actor, body, engine=writes.engine
        )
    )


@router.post("/reviews/{review_id}/undo", response_model=ItemOut)
async def undo(review_id: Annotated[int, Path(ge=1, le=2**62)], who: Caller, request: Request):
    """Take back your decision (its id is in the item's ``reviews``) within
    ``REVIEWQUEUE_UNDO_SECONDS``, if nobody acted on the item since: the item comes back
    to you under a fresh lease, and an app told of the decision is told of the undo."""
    who.require(Scope.REVIEW)
    writes = writes_of(request)
    return _json(await writes.run(review.undo, review_id, who.actor, queues=who.queues, engine=writes.engine))


@router.post("/items/{item_id}/adjudication", response_model=ItemOut)
async def adjudicate(item_id: ItemId, body: AdjudicationIn, who: Caller, request: Request):
    """Settle a disputed item: pick one reviewer's decision or give your own. The token
    needs the review scope and must act as a lead or an admin."""
    who.require(Scope.REVIEW)
    who.require_role(Role.LEAD)
    writes = writes_of(request)
    return _json(
        await writes.run(
            _queue_checked,
            who,
            item_id,
            review.adjudicate,
            item_id,
            who.actor,
            body.decision,
            pick=body.pick,
            engine=writes.engine,
        )
    )
