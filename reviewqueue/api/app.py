"""The HTTP API: a thin FastAPI shell over the domain. Routes authenticate, check the
token's scope and queues, call one domain function, and shape the answer; every rule
lives in the domain modules.

Run it with ``reviewqueue api`` (uvicorn), or ``uvicorn --factory reviewqueue.api.app:create_app``.
"""


import gc
import logging
import os
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from .. import __version__, db, ingest, items, queues, review, tokens, webhooks
from ..errors import AuthenticationFailed
from ..groupcommit import GroupCommit
from ..items import ItemFilter
from ..schemas import (
    ID_PATTERN,
    QUEUE_NAME_PATTERN,
    DecisionIn,
    ItemIn,
    ItemOut,
    QueueOut,
    QueueSettings,
    Status,
    SubmitResult,
)
from ..settings import get_settings
from . import errors, limits, prometheus

log = logging.getLogger("reviewqueue.api")


class BatchIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=1000, description="Up to 1,000 items, stored atomically.")


class BatchOut(BaseModel):
    results: list[SubmitResult]


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None


class Health(BaseModel):
    status: str


def _json(model: BaseModel) -> Response:
    # The hot review routes return their model already validated: serialise it once,
    # instead of FastAPI validating it again against the response_model.
    return Response(model.model_dump_json(), media_type="application/json")


_heap_frozen = False


def _freeze_start_up_heap() -> None:
    # Move everything alive after start-up (modules, the app, SQLAlchemy's caches) out
    # of the garbage collector's sight: its full collections walked all of it and paused
    # a worker for up to 86 ms under load, setting the p99 of every route. Once per
    # process: frozen objects are never collected, so later apps (tests) must not freeze
    # what they leave behind.
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def _writes(request: Request) -> GroupCommit:
    return request.app.state.writes


def _queue_checked(who: tokens.Principal, item_id: str, fn, *args, engine, **kwargs):
    """``fn`` after checking that a queue-limited token may act on the item's queue."""
    if who.queues:
        who.require_queue(items.get(item_id, engine=engine).queue)
    return fn(*args, engine=engine, **kwargs)


def create_app(database_url: str | None = None, *, webhook_worker: bool | None = None) -> FastAPI:
    settings = get_settings()
    if webhook_worker is None:  # set by `reviewqueue api` / `up` for their uvicorn workers
        webhook_worker = os.environ.get("REVIEWQUEUE_WEBHOOK_WORKER") == "1"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = db.get_engine(database_url)
        db.upgrade(app.state.engine)
        # Concurrent writes (ingest, claim, release, decide) share transactions.
        app.state.writes = GroupCommit(app.state.engine)
        app.state.submit_each = partial(ingest.submit_each, engine=app.state.engine)
        worker = webhooks.Worker(app.state.engine).start() if webhook_worker else None
        _freeze_start_up_heap()
        yield
        if worker:
            worker.stop()
        app.state.writes.stop()

    app = FastAPI(
        title="reviewqueue", version=__version__, lifespan=lifespan,
        description="Post model outputs for human review and read the verdicts back. "
                    "Every /v1 route takes `Authorization: Bearer <token>`.",
    )
    errors.install(app)

    def limit_for(path: str) -> int:
        if path == "/v1/items":
            return settings.max_item_bytes + 64 * 1024  # one item plus its JSON envelope
        return settings.max_request_bytes

    app.add_middleware(limits.BodySizeLimit, limit_for=limit_for)

    app.add_middleware(prometheus.Timing)

    async def engine(request: Request):  # async: no thread hop just to read app state
        return request.app.state.engine

    def look_up(token: str, eng) -> tokens.Principal:
        who = tokens.authenticate(token, engine=eng)
        tokens.touch(who.token, engine=eng)
        return who

    async def principal(request: Request) -> tokens.Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("missing token: send 'Authorization: Bearer <token>'")
        # A token seen in the last second needs no database read (nor a thread).
        who = tokens.recently_authenticated(token)
        if who is not None and not tokens.touch_due(who.token):
            return who
        return await run_in_threadpool(look_up, token, request.app.state.engine)

    Caller = Annotated[tokens.Principal, Depends(principal)]
    Engine = Annotated[Any, Depends(engine)]
    ItemId = Annotated[str, Path(pattern=ID_PATTERN)]

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz(eng: Engine):
        try:
            db.ping(eng)
        except Exception as exc:  # the database did not answer
            log.warning("health check failed: %s", exc)
            return JSONResponse({"status": "unavailable", "detail": "database did not answer"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    def metrics(eng: Engine):
        body, content_type = prometheus.render(eng)
        return Response(body, media_type=content_type)

    @app.post("/v1/items", response_model=SubmitResult, status_code=201, tags=["ingest"],
              responses={200: {"description": "Seen before: the stored item, with duplicate=true"}})
    async def post_item(body: ItemIn, who: Caller, request: Request):
        who.require("ingest")
        who.require_queue(body.queue)
        result = await _writes(request).run_combined(request.app.state.submit_each, (body, who.actor))
        return JSONResponse(result.as_dict(), status_code=200 if result.duplicate else 201)

    @app.post("/v1/items/batch", response_model=BatchOut, tags=["ingest"])
    def post_batch(body: BatchIn, who: Caller, eng: Engine):
        who.require("ingest")
        for name in {i.queue for i in body.items}:
            who.require_queue(name)
        results = ingest.submit_many(body.items, actor=who.actor, engine=eng)
        return JSONResponse({"results": [r.as_dict() for r in results]})

    @app.get("/v1/items/{item_id}", response_model=ItemOut, tags=["items"])
    def get_item(item_id: ItemId, who: Caller, eng: Engine):
        who.require("read")
        item = items.get(item_id, engine=eng)
        who.require_queue(item.queue)
        return item

    @app.get("/v1/items", response_model=ItemPage, tags=["items"])
    def list_items(
        who: Caller, eng: Engine,
        queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
        status: Status | None = None,
        updated_since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ):
        who.require("read")
        if queue:
            who.require_queue(queue)
        flt = ItemFilter(queues=[queue] if queue else who.allowed_queues(),
                         statuses=[status] if status else None, updated_since=updated_since)
        page, next_cursor = items.poll(flt, limit=limit, cursor=cursor, engine=eng)
        return {"items": page, "next_cursor": next_cursor}

    @app.get("/v1/queues", response_model=list[QueueOut], tags=["queues"])
    def list_queues(who: Caller, eng: Engine):
        who.require("read")
        return queues.overview(engine=eng, only=who.allowed_queues())

    @app.put("/v1/queues/{name}", response_model=QueueOut, tags=["queues"],
             responses={201: {"description": "Created"}})
    def put_queue(name: Annotated[str, Path(pattern=QUEUE_NAME_PATTERN)], body: QueueSettings, who: Caller,
                  eng: Engine):
        who.require("admin")
        who.require_queue(name)
        _, created = queues.upsert(name, body, actor=who.actor, engine=eng)
        out = queues.overview(engine=eng, only=[name])[0]
        return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)

    @app.post("/v1/queues/{name}/claim", response_model=ItemOut, tags=["review"],
              responses={204: {"description": "Nothing is waiting"}})
    async def claim(name: Annotated[str, Path(pattern=QUEUE_NAME_PATTERN)], who: Caller, request: Request):
        who.require("review")
        who.require_queue(name)
        item = await _writes(request).run(review.claim_next, name, who.actor, engine=request.app.state.engine)
        if item is None:
            return Response(status_code=204)
        return _json(item)

    @app.post("/v1/items/{item_id}/release", response_model=ItemOut, tags=["review"])
    async def release(item_id: ItemId, who: Caller, request: Request):
        who.require("review")
        eng = request.app.state.engine
        return _json(await _writes(request).run(_queue_checked, who, item_id, review.release, item_id, who.actor,
                                                engine=eng))

    @app.post("/v1/items/{item_id}/decision", response_model=ItemOut, tags=["review"])
    async def decide(item_id: ItemId, body: DecisionIn, who: Caller, request: Request):
        who.require("review")
        eng = request.app.state.engine
        return _json(await _writes(request).run(_queue_checked, who, item_id, review.decide_item, item_id, who.actor,
                                                body, engine=eng))

    return app
