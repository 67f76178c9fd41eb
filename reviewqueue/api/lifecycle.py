"""A process's life as a load balancer sees it: serving, then draining.

On SIGTERM (``api/server.py``) the process starts *draining*: ``/readyz`` answers 503
at once, so the balancer stops sending new requests, but requests keep being served
for ``REVIEWQUEUE_DRAIN_SECONDS`` (``--drain-seconds``), each answered with
``Connection: close`` so clients stop reusing their connections to this process; then
it stops listening, lets the requests in flight finish, and exits.
"""

from __future__ import annotations

import threading
import time

from .. import store

#: Set once the process is draining.
draining = threading.Event()


class Lifecycle:
    """Pure ASGI middleware: gives each HTTP request its deadline for a database
    connection (``REVIEWQUEUE_DB_POOL_TIMEOUT`` from its arrival, see
    ``store.request_deadline``), and closes connections after their response while
    the process drains."""

    def __init__(self, app, pool_timeout: float):
        self.app = app
        self.pool_timeout = pool_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = store.request_deadline.set(time.monotonic() + self.pool_timeout)
        try:
            if not draining.is_set():
                return await self.app(scope, receive, send)

            async def closing(message):
                if message["type"] == "http.response.start":
                    headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
                await send(message)

            return await self.app(scope, receive, closing)
        finally:
            store.request_deadline.reset(token)
