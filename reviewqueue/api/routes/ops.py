"""Operations: health and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from ... import store
from .. import prometheus
from ..deps import Engine

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
def metrics(engine: Engine):
    body, content_type = prometheus.render(engine)
    return Response(body, media_type=content_type)
