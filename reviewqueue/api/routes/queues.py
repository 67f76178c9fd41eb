"""Queues: their settings and counts."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ... import queues
from ...schemas import QueueOut, QueueSettings
from ...vocab import Scope
from ..deps import Caller, Engine, QueueName

router = APIRouter(prefix="/v1/queues", tags=["queues"])


@router.get("", response_model=list[QueueOut])
def list_queues(who: Caller, engine: Engine):
    who.require(Scope.READ)
    return queues.overview(engine=engine, only=who.allowed_queues())


@router.put("/{name}", response_model=QueueOut, responses={201: {"description": "Created"}})
def put_queue(name: QueueName, body: QueueSettings, who: Caller, engine: Engine):
    who.require(Scope.ADMIN)
    who.require_queue(name)
    _, created = queues.upsert(name, body, actor=who.audit_actor, engine=engine)
    out = queues.overview(engine=engine, only=[name])[0]
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)
