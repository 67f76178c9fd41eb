"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from ... import store
from ...vocab import Scope
from .. import lifecycle, prometheus
from ..deps import Engine, principal
from ..errors import documented

log = logging.getLogger("reviewqueue.api")
router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: str


@router.get("/livez", response_model=Health)
async def livez():
    """The process is alive and its event loop turns; the database is not asked."""
    return {"status": "alive"}


_UNREADY = {503: {"model": Health, "description": "draining, or the database did not answer in time"}}


@router.get("/readyz", response_model=Health, responses=_UNREADY)
async def readyz(request: Request):
    """Ready for traffic: not draining, and the database answers ``SELECT 1`` within two
    seconds over a connection kept for this (never behind the requests in the pool)."""
    state = request.app.state
    if lifecycle.draining.is_set():
        return JSONResponse({"status": "draining"}, status_code=503)
    try:
        check = asyncio.wrap_future(state.probe_thread.submit(state.probe.check))
        await asyncio.wait_for(check, timeout=state.probe.timeout + 0.5)
    except Exception as exc:  # the database did not answer in time
        log.warning("readiness check failed: %s", exc or type(exc).__name__)
        return JSONResponse({"status": "unavailable", "detail": "database did not answer"}, status_code=503)
    return {"status": "ok"}


@router.get("/healthz", response_model=Health, responses=_UNREADY)
async def healthz(request: Request):
    """The same as ``/readyz`` (kept for load balancers configured before it existed)."""
    return await readyz(request)


@router.get("/metrics", response_class=PlainTextResponse, responses=documented(401, 403, 503))
async def metrics(request: Request, engine: Engine):
    if store.settings_of(engine).metrics_token:  # REVIEWQUEUE_METRICS_TOKEN=1: a read token is required
        (await principal(request)).require(Scope.READ)
    body, content_type = await run_in_threadpool(prometheus.render, engine)
    return Response(body, media_type=content_type)
