"""A small Python client for the HTTP API::

    from reviewqueue.client import Client

    with Client("http://127.0.0.1:8000", token) as rq:
        r = rq.submit({"queue": "support", "input": "...", "output": "...", "confidence": 0.4})
        item = rq.wait_for_decision(r.id, timeout=3600)
        print(item.decision.verdict, item.decision.final_output)

Retries on connection errors and 5xx never create a duplicate: every item is sent
with an ``external_id`` (one is generated when you give none), so a retried post of
an item the server already stored returns that item.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

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
from .vocab import DECIDED, Status

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

    def wait_for_decision(self, item_id: str, timeout: float = 3600, poll: float = 1.0) -> ItemOut:
        """Poll until the item is decided (or was auto-accepted); ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.get(item_id)
            if item.status in DECIDED or item.status == Status.AUTO_ACCEPTED:
                return item
            if time.monotonic() >= deadline:
                raise TimeoutError(f"item {item_id} is still {item.status} after {timeout} s")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

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
