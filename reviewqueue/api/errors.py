"""The one place that turns errors into HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..errors import AuthenticationFailed, QueueNotFound, ReviewQueueError, Unavailable

log = logging.getLogger("reviewqueue.api")


class Problem(BaseModel):
    """An error: what to fix, as text, or each bad field (``loc``, ``msg``, ``type``)."""

    detail: str | list[dict[str, Any]]


_SAYS = {
    400: "The request cannot be done as asked (the message says why)",
    401: "No token, or one that is wrong, revoked or expired",
    403: "The token's scope, queues or user may not do this",
    404: "No such item, queue, review or webhook",
    408: "The request body did not arrive in time",
    409: "The item's state does not allow it now (someone else holds it, it is decided, ...)",
    413: "The body or an item is over its size limit",
    422: "A field is invalid: each bad field is listed",
    429: "Too many attempts: try again after the time given",
    503: "The database is busy or unreachable: try again after Retry-After seconds",
}


def documented(*codes: int) -> dict[int, dict]:
    """OpenAPI ``responses`` for the error statuses an operation can answer."""
    return {code: {"model": Problem, "description": _SAYS[code]} for code in codes}


#: What every authenticated /v1 operation may answer besides its success.
V1_ERRORS = documented(400, 401, 403, 404, 408, 409, 413, 422, 503)


def _clean(errors) -> list[dict]:
    # Never echo the input back: it may be megabytes, or a secret.
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        out.append({"loc": loc, "msg": err.get("msg", "invalid"), "type": err.get("type", "value_error")})
    return out


def _with_hint(exc: ReviewQueueError):
    """The error's detail, with what an API client can do about it."""
    if isinstance(exc, QueueNotFound) and exc.detail == exc.message:
        return f"{exc.message}; an admin token creates it with PUT /v1/queues/{exc.name}"
    return exc.detail


def install(app: FastAPI) -> None:
    @app.exception_handler(ReviewQueueError)
    async def domain_error(_request: Request, exc: ReviewQueueError):
        headers = None
        if isinstance(exc, AuthenticationFailed):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, Unavailable):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": _with_hint(exc)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _clean(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)
