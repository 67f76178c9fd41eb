"""A small Python client for the HTTP API::

    from reviewqueue.client import Client

    with Client("http://127.0.0.1:8000", token) as rq:
        r = rq.submit({"queue": "support", "input": "...", "output": "...", "confidence": 0.4})
        item = rq.wait_for_decision(r.id, timeout=3600)
        print(item.decision.verdict, item.decision.final_output)

Retries on connection errors and 5xx never create a duplicate: every item is sent
with an ``external_id`` (one is generated when you give none), so a retried post of
an item the server already stored returns that item.

Waiting for a human, with a fallback of your own (README: "Waiting for a human")::

    answer = rq.review(item, timeout=30, fallback="reject")
    if answer.approved: ...          # answer.source: reviewer, deadline, timeout or threshold

:class:`AsyncClient` has the same methods, to ``await``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ReviewQueueError,
    ValidationFailed,
)
from .schemas import ItemIn, ItemOut, QueueOut, SubmitResult
from .toolcalls import ToolCallIn, ToolDecision
from .vocab import FINAL, Source, Status, Verdict

_BY_STATUS = {
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
}


class ServerError(ReviewQueueError):
    """The server failed (5xx) or could not be reached, after all retries."""

    status_code = 502


def _error(resp: httpx.Response) -> ReviewQueueError:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = resp.text[:500]
    message = detail if isinstance(detail, str) else f"HTTP {resp.status_code}: {detail}"
    cls = _BY_STATUS.get(resp.status_code)
    if cls is ValidationFailed:
        return ValidationFailed(message, detail if isinstance(detail, list) else None)
    if cls is None:
        return ServerError(f"HTTP {resp.status_code}: {message}", detail=detail)
    return cls(message, detail=detail)


#: The longest one request waits on the server (GET /v1/items/{id}?wait=).
LONG_POLL = 60.0


@dataclass(frozen=True)
class Answer:
    """What to do with a posted output, and who said so."""

    verdict: Verdict
    #: The output to use: the model's (approved), the reviewer's (corrected); none if rejected.
    output: Any
    label: str | None
    reason: str | None
    #: reviewer (a person decided), deadline (the queue's fallback), timeout (this
    #: client's fallback: it stopped waiting first) or threshold (auto-accepted).
    source: Source
    reviewer: str | None
    item_id: str
    #: The item as last read (none when the server could not be asked).
    item: ItemOut | None = None

    @property
    def approved(self) -> bool:
        """Whether the output (possibly corrected) may be used."""
        return self.verdict != Verdict.REJECT

    @classmethod
    def of(cls, item: ItemOut) -> Answer:
        if item.status == Status.AUTO_ACCEPTED:
            return cls(
                Verdict.APPROVE,
                item.output,
                item.predicted_label,
                None,
                Source.THRESHOLD,
                None,
                item.id,
                item,
            )
        d = item.decision
        return cls(d.verdict, d.final_output, d.final_label, d.reason, d.source, d.reviewer, item.id, item)

    @classmethod
    def fallback(cls, item_id: str, data: Mapping[str, Any], fallback: str, item: ItemOut | None) -> Answer:
        if fallback == "accept":
            return cls(
                Verdict.APPROVE,
                data.get("output"),
                data.get("predicted_label"),
                None,
                Source.TIMEOUT,
                None,
                item_id,
                item,
            )
        return cls(Verdict.REJECT, None, None, "timeout", Source.TIMEOUT, None, item_id, item)


def _long_poll(http, wait: float) -> dict[str, Any]:
    """Options of a GET the server answers as soon as there is an answer, or after
    ``wait`` seconds (at most 60): the read timeout is stretched by the wait."""
    wait = max(0.0, min(LONG_POLL, wait))
    read = http.timeout.read
    return {"params": {"wait": round(wait, 3)}, "timeout": httpx.Timeout(read + wait if read else None)}


def _call_json(call) -> dict[str, Any]:
    return call.model_dump(mode="json", exclude_none=True) if isinstance(call, ToolCallIn) else dict(call)


def _fallback_of(fallback: str) -> str:
    if fallback not in ("accept", "reject"):
        raise ValueError("fallback must be 'accept' (use the model's output) or 'reject'")
    return fallback


class Client:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ):
        self.retries = retries
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "reviewqueue-client"},
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServerError(f"could not reach the server: {exc}") from exc
            else:
                if resp.status_code < 500 or attempt == self.retries:
                    if resp.status_code >= 400:
                        raise _error(resp)
                    return resp
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    @staticmethod
    def _prepare(item: ItemIn | Mapping[str, Any]) -> dict[str, Any]:
        data = item.model_dump(mode="json", exclude_none=True) if isinstance(item, ItemIn) else dict(item)
        data.setdefault("external_id", f"client-{uuid.uuid4()}")
        return data

    def submit(self, item: ItemIn | Mapping[str, Any]) -> SubmitResult:
        """Post one output; returns where it went (``duplicate=True`` if seen before)."""
        return SubmitResult(**self._request("POST", "/v1/items", json=self._prepare(item)).json())

    def submit_many(
        self, items: Iterable[ItemIn | Mapping[str, Any]], *, batch_size: int = 1000
    ) -> list[SubmitResult]:
        """Post many outputs in batches of up to 1,000 (each batch atomic)."""
        prepared = [self._prepare(i) for i in items]
        results: list[SubmitResult] = []
        for start in range(0, len(prepared), batch_size):
            resp = self._request(
                "POST", "/v1/items/batch", json={"items": prepared[start : start + batch_size]}
            )
            results.extend(SubmitResult(**r) for r in resp.json()["results"])
        return results

    def get(self, item_id: str) -> ItemOut:
        return ItemOut.model_validate(self._request("GET", f"/v1/items/{item_id}").json())

    def queues(self) -> list[QueueOut]:
        return [QueueOut.model_validate(q) for q in self._request("GET", "/v1/queues").json()]

    def wait_for_decision(self, item_id: str, timeout: float = 3600, poll: float | None = None) -> ItemOut:
        """Wait until the item is final (decided, auto-accepted, or decided by its
        deadline fallback); ``TimeoutError`` otherwise. Long polls the server (an answer
        as soon as it is final); ``poll`` seconds asks again that often instead."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            item = self.get(item_id) if poll is not None or left <= 0 else self.get_final(item_id, left)
            if item.status in FINAL:
                return item
            if time.monotonic() >= deadline:
                raise TimeoutError(f"item {item_id} is still {item.status} after {timeout} s")
            if poll is not None:
                time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def get_final(self, item_id: str, wait: float) -> ItemOut:
        """The item once final, or as it is after ``wait`` seconds (at most 60): one
        request the server answers as soon as the item is decided."""
        resp = self._request("GET", f"/v1/items/{item_id}", **_long_poll(self._http, wait))
        return ItemOut.model_validate(resp.json())

    def propose_tool_call(self, call: ToolCallIn | Mapping[str, Any]) -> SubmitResult:
        """Post an agent's proposed tool call before it runs (a tool_call queue); posting
        the same ``tool_call_id`` again finds the same item."""
        return SubmitResult(**self._request("POST", "/v1/tool-calls", json=_call_json(call)).json())

    def mark_applied(self, item_id: str) -> bool:
        """Mark the call's decision applied; True the first time only (run the tool then)."""
        return bool(self._request("POST", f"/v1/tool-calls/{item_id}/applied").json()["first"])

    def tool_decision(self, item_id: str, wait: float = 0.0) -> ToolDecision:
        """What to do with the call (pending, approve, edit or reject), waiting up to
        ``wait`` seconds (at most 60) for a decision."""
        resp = self._request("GET", f"/v1/tool-calls/{item_id}", **_long_poll(self._http, wait))
        return ToolDecision.model_validate(resp.json())

    def review(
        self,
        item: ItemIn | Mapping[str, Any],
        *,
        timeout: float,
        fallback: Literal["accept", "reject"] = "reject",
    ) -> Answer:
        """Post ``item`` (idempotently: a retried call with the same ``external_id`` finds
        the same item) and wait up to ``timeout`` seconds for its answer: a reviewer's
        verdict, the queue's deadline fallback, or auto-acceptance. If none comes in
        time, ``fallback`` (``source`` "timeout"): "accept" uses the model's output,
        "reject" does not. Give a timeout shorter than the queue's deadline for your own
        fallback to apply first."""
        _fallback_of(fallback)
        data = self._prepare(item)
        posted = self.submit(data)
        until = time.monotonic() + timeout
        current = None
        while True:
            left = until - time.monotonic()
            current = self.get_final(posted.id, left) if left > 0 else self.get(posted.id)
            if current.status in FINAL:
                return Answer.of(current)
            if time.monotonic() >= until:
                return Answer.fallback(posted.id, data, fallback, current)

    def claim(self, queue: str) -> ItemOut | None:
        resp = self._request("POST", f"/v1/queues/{queue}/claim")
        return None if resp.status_code == 204 else ItemOut.model_validate(resp.json())

    def decide(self, item_id: str, verdict: str, **fields) -> ItemOut:
        body = {"verdict": verdict, **fields}
        return ItemOut.model_validate(
            self._request("POST", f"/v1/items/{item_id}/decision", json=body).json()
        )

    def release(self, item_id: str) -> ItemOut:
        return ItemOut.model_validate(self._request("POST", f"/v1/items/{item_id}/release").json())


class AsyncClient:
    """:class:`Client` for asyncio: the same calls, awaited::

    async with AsyncClient(url, token) as rq:
        answer = await rq.review(item, timeout=30, fallback="reject")
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "reviewqueue-client"},
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                resp = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServerError(f"could not reach the server: {exc}") from exc
            else:
                if resp.status_code < 500 or attempt == self.retries:
                    if resp.status_code >= 400:
                        raise _error(resp)
                    return resp
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def submit(self, item: ItemIn | Mapping[str, Any]) -> SubmitResult:
        resp = await self._request("POST", "/v1/items", json=Client._prepare(item))
        return SubmitResult(**resp.json())

    async def get(self, item_id: str) -> ItemOut:
        return ItemOut.model_validate((await self._request("GET", f"/v1/items/{item_id}")).json())

    async def get_final(self, item_id: str, wait: float) -> ItemOut:
        resp = await self._request("GET", f"/v1/items/{item_id}", **_long_poll(self._http, wait))
        return ItemOut.model_validate(resp.json())

    async def propose_tool_call(self, call: ToolCallIn | Mapping[str, Any]) -> SubmitResult:
        resp = await self._request("POST", "/v1/tool-calls", json=_call_json(call))
        return SubmitResult(**resp.json())

    async def mark_applied(self, item_id: str) -> bool:
        return bool((await self._request("POST", f"/v1/tool-calls/{item_id}/applied")).json()["first"])

    async def tool_decision(self, item_id: str, wait: float = 0.0) -> ToolDecision:
        resp = await self._request("GET", f"/v1/tool-calls/{item_id}", **_long_poll(self._http, wait))
        return ToolDecision.model_validate(resp.json())

    async def wait_for_decision(self, item_id: str, timeout: float = 3600) -> ItemOut:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            item = await (self.get_final(item_id, left) if left > 0 else self.get(item_id))
            if item.status in FINAL:
                return item
            if time.monotonic() >= deadline:
                raise TimeoutError(f"item {item_id} is still {item.status} after {timeout} s")

    async def review(
        self,
        item: ItemIn | Mapping[str, Any],
        *,
        timeout: float,
        fallback: Literal["accept", "reject"] = "reject",
    ) -> Answer:
        """See :meth:`Client.review`."""
        _fallback_of(fallback)
        data = Client._prepare(item)
        posted = await self.submit(data)
        until = time.monotonic() + timeout
        while True:
            left = until - time.monotonic()
            current = await (self.get_final(posted.id, left) if left > 0 else self.get(posted.id))
            if current.status in FINAL:
                return Answer.of(current)
            if time.monotonic() >= until:
                return Answer.fallback(posted.id, data, fallback, current)
