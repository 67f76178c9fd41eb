"""Request body limits, enforced before anything parses the body: its size, and how long
a client may take to send it (a slow client must not hold a connection for minutes)."""

from __future__ import annotations

import asyncio
import json


class BodySizeLimit:
    """ASGI middleware: 413 for a body over the limit for its path, whether announced
    by Content-Length or streamed in chunks."""

    def __init__(self, app, limit_for, timeout: float = 15.0):
        self.app = app
        self.limit_for = limit_for
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        return await _too_large(send, limit)
                except ValueError:
                    pass
        chunks, size = [], 0
        # One deadline for the whole body. asyncio.timeout, not wait_for per message:
        # wait_for wraps each receive in a task of its own, and those extra turns of the
        # event loop were a visible share of a busy worker's time.
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body = message.get("body", b"")
                    size += len(body)
                    if size > limit:
                        break
                    chunks.append(body)
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            return await _too_slow(send, self.timeout)
        if size > limit:
            return await _too_large(send, limit)
        whole = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _too_slow(send, timeout: float) -> None:
    body = json.dumps({"detail": f"the request body did not arrive within {timeout:g} seconds"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _too_large(send, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body is over the limit of {limit} bytes for this endpoint"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
