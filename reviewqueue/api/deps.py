"""What every route depends on: the engine, the group commit, and the caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool

from .. import tokens
from ..errors import AuthenticationFailed
from ..groupcommit import GroupCommit
from ..schemas import ID_PATTERN, QUEUE_NAME_PATTERN


async def _engine(request: Request):  # async: no thread hop just to read app state
    return request.app.state.engine


def writes_of(request: Request) -> GroupCommit:
    """The app's group commit (its ``engine`` is the app's). The hot routes take the
    request rather than a dependency: each dependency FastAPI solves cost ~12 us."""
    return request.app.state.writes


def _look_up(token: str, engine) -> tokens.Principal:
    who = tokens.authenticate(token, engine=engine)
    tokens.touch(who.token, engine=engine)
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
    return await run_in_threadpool(_look_up, token, request.app.state.engine)


#: The caller behind the request's bearer token.
Caller = Annotated[tokens.Principal, Depends(principal)]
#: The app's database engine.
Engine = Annotated[Any, Depends(_engine)]
ItemId = Annotated[str, Path(pattern=ID_PATTERN)]
QueueName = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN)]
