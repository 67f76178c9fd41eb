"""Operations: health and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from ... import store
from ...vocab import Scope
from .. import prometheus
from ..deps import Engine, principal

log = logging.getLogger("reviewqueue.api")
router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health)
def healthz(engine: Engine):
    try:
        store.ping(engine)
    except Exception as exc:  # the database did not answer
        log.warning("health check failed: %s", exc)
        return JSONResponse({"status": "unavailable", "detail": "database did not answer"}, status_code=503)
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, engine: Engine):
    if store.settings_of(engine).metrics_token:  # REVIEWQUEUE_METRICS_TOKEN=1: a read token is required
        (await principal(request)).require(Scope.READ)
    body, content_type = await run_in_threadpool(prometheus.render, engine)
    return Response(body, media_type=content_type)
