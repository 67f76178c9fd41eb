"""Request body limits, enforced before anything parses the body: its size, and how long
a client may take to send it (a slow client must not hold a connection for minutes)."""

from __future__ import annotations

import asyncio
import json
import time


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
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return await _too_slow(send, self.timeout)
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return await _too_large(send, limit)
            chunks.append(body)
            if not message.get("more_body"):
                break
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
