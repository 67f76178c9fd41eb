"""The HTTP API: a thin FastAPI shell over the domain. Routes (``routes/``, one router per
concept) authenticate, check the token's scope and queues, call one domain function,
and shape the answer; every rule lives in the domain modules.

Run it with ``reviewqueue api`` (uvicorn), or ``uvicorn --factory reviewqueue.api.app:create_app``.
"""

from __future__ import annotations

import gc
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from .. import __version__, cluster, ingest, store, waiting
from .. import background as _background
from ..groupcommit import GroupCommit
from ..settings import Settings, get_settings
from . import errors, lifecycle, limits, prometheus
from .routes import audit as audit_routes
from .routes import items, ops, queues, review, toolcalls

log = logging.getLogger("reviewqueue.api")
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


def create_app(
    database_url: str | None = None, *, settings: Settings | None = None, background: bool | None = None
) -> FastAPI:
    """The API. Given ``settings``, it uses an engine of its own made with them;
    otherwise the process-wide engine of ``database_url``. ``background`` runs the
    deployment's background jobs in this process too (default: when
    ``REVIEWQUEUE_BACKGROUND=1``, which ``reviewqueue api`` and ``up`` set)."""
    own_engine = settings is not None
    settings = settings or get_settings()
    if background is None:
        background = os.environ.get("REVIEWQUEUE_BACKGROUND") == "1"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        url = database_url or settings.database_url
        app.state.engine = store.make_engine(url, settings=settings) if own_engine else store.get_engine(url)
        store.upgrade(app.state.engine)
        cluster.check_key(engine=app.state.engine)  # refuses to start with another host's key
        app.state.probe = store.Probe(app.state.engine)
        app.state.probe_thread = ThreadPoolExecutor(1, thread_name_prefix="reviewqueue-readyz")
        if not store.is_sqlite(app.state.engine):
            log.info(
                "connection budget: at most %d PostgreSQL connections from this process (pool %d + "
                "overflow %d, and 1 for /readyz); REVIEWQUEUE_DB_POOL_SIZE and REVIEWQUEUE_DB_MAX_OVERFLOW set it",
                store.connection_budget(app.state.engine) + 1,
                settings.db_pool_size,
                settings.db_max_overflow,
            )
        # Concurrent writes (ingest, claim, release, decide) share transactions.
        app.state.writes = GroupCommit(app.state.engine)
        app.state.submit_each = partial(ingest.submit_each, engine=app.state.engine)
        # Apps waiting for verdicts (GET /v1/items/{id}?wait=): one notifier for all.
        app.state.waiting = waiting.Notifier(app.state.engine).start()
        # Webhook delivery, sealing the audit log, purging content past its retention.
        runner = _background.start(app.state.engine) if background else None
        _freeze_start_up_heap()
        yield
        if runner is not None:
            runner.stop()
        app.state.writes.stop()
        app.state.waiting.stop()
        app.state.probe_thread.shutdown(wait=False)
        app.state.probe.close()
        if own_engine:
            store.dispose(app.state.engine)

    app = FastAPI(
        title="reviewqueue",
        version=__version__,
        lifespan=lifespan,
        description="Post model outputs for human review and read the verdicts back. "
        "Every /v1 route takes `Authorization: Bearer <token>`.",
    )
    errors.install(app)

    def limit_for(path: str) -> int:
        if path == "/v1/items":
            return settings.max_item_bytes + 64 * 1024  # one item plus its JSON envelope
        return settings.max_request_bytes

    app.add_middleware(limits.BodySizeLimit, limit_for=limit_for, timeout=settings.body_timeout_seconds)
    app.add_middleware(lifecycle.Lifecycle, pool_timeout=settings.db_pool_timeout)
    app.add_middleware(prometheus.Timing)
    # Each concept's routes are written on its own APIRouter (routes/) and added to the
    # app's router as they are, not through include_router: FastAPI resolves an
    # included router on every request (its candidates, then the route), which cost a
    # claim or a decision ~30 us of a busy worker's time. Reviewers' and posting apps'
    # routes first: requests are matched in this order.
    for module in (review, items, toolcalls, queues, ops, audit_routes):
        app.router.routes.extend(module.router.routes)
    return app
