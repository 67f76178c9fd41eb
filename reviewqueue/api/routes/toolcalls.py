"""Tool calls: an agent posts a proposed call and reads what to do with it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ... import ingest, items, toolcalls
from ...schemas import SubmitResult
from ...toolcalls import ToolCallIn, ToolDecision
from ...vocab import Scope
from ..deps import Caller, Engine, ItemId
from ..errors import V1_ERRORS
from .items import WaitSeconds, read_final

router = APIRouter(prefix="/v1/tool-calls", tags=["tool calls"], responses=V1_ERRORS)


@router.post(
    "",
    response_model=SubmitResult,
    status_code=201,
    responses={200: {"description": "The same tool_call_id seen before: the stored item, duplicate=true"}},
)
def post_tool_call(body: ToolCallIn, who: Caller, engine: Engine):
    """Post a proposed call before running it; the item's id is what to ask about."""
    who.require(Scope.INGEST)
    who.require_queue(body.queue)
    result = ingest.submit(toolcalls.to_item(body), actor=who.audit_actor, engine=engine)
    return JSONResponse(result.as_dict(), status_code=200 if result.duplicate else 201)


@router.get("/{item_id}", response_model=ToolDecision)
async def get_tool_decision(
    item_id: ItemId,
    who: Caller,
    engine: Engine,
    request: Request,
    wait: WaitSeconds = 0,
):
    """What to do with the call: pending, approve (run as proposed), edit (run with
    ``arguments``) or reject (do not run; ``message`` is for the model)."""
    who.require(Scope.READ)
    return toolcalls.decision_of(await read_final(item_id, who, engine, request, wait))


class Applied(BaseModel):
    id: str
    #: True the first time: run the tool (or tell the model it was rejected) now. False:
    #: someone already applied this decision; do nothing.
    first: bool


@router.post("/{item_id}/applied", response_model=Applied)
def post_applied(item_id: ItemId, who: Caller, engine: Engine):
    """The agent applies the decision once: mark it before running the tool."""
    who.require(Scope.INGEST)
    who.require_queue(items.get(item_id, engine=engine).queue)
    return {"id": item_id, "first": toolcalls.mark_applied(item_id, engine=engine)}
