"""Group commit: many concurrent writers, one transaction.

Under load most of a small write's cost is the transaction around it: taking the
database's write lock (SQLite has one), handing it between threads and processes,
and committing. A :class:`GroupCommit` runs the write operations that arrive while
the previous group is committing together, on one thread, in one transaction, each
in its own savepoint (``store.group``): an operation that fails is undone
alone and its caller gets the error, the others commit. Callers wait for the commit,
so a result is never returned for work that is not durable.

Used by the HTTP API for single-item ingest, claims, releases and decisions; the
operations are the ordinary domain functions (``review.claim_next`` ...), whose
``store.write`` becomes a savepoint inside the group, and ``ingest.submit_each``, which stores every single-item
post of a group with one insert. A lone request is not delayed: the thread
starts a group as soon as anything is waiting and takes whatever else has arrived.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from . import store

log = logging.getLogger(__name__)

#: At most this many operations share a transaction, so one group's latency stays small.
MAX_GROUP = 200

_STOP = object()
_COMBINED = object()  # marks a run_combined operation in the queue


class GroupCommit:
    def __init__(self, engine=None, *, max_group: int = MAX_GROUP, name: str = "group-commit"):
        self.engine = engine or store.get_engine()
        self.max_group = max_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.groups = 0  # for tests and metrics: how many transactions ran
        self.operations = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` for the next group; the future holds its result
        (or exception) once the group has committed."""
        future: Future = Future()
        self._put((fn, args, kwargs, future))
        return future

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``submit`` for asyncio callers: await the result without holding a thread."""
        future = asyncio.get_running_loop().create_future()
        self._put((fn, args, kwargs, future))
        return await future

    async def run_combined(self, fn_many: Callable[[list], list], arg: Any) -> Any:
        """Like :meth:`run`, for work that is cheaper done many at a time: the group
        calls ``fn_many`` once with the ``arg`` of every such caller in it, and
        ``fn_many`` returns, for each, a result or the exception to raise."""
        result = await self.run(_COMBINED, fn_many, arg)
        if isinstance(result, BaseException):
            raise result
        return result

    def _put(self, op: tuple) -> None:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        self._queue.put(op)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _take(self) -> tuple[list, bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self.max_group:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is _STOP:
                return batch, True
            batch.append(op)
        return batch, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take()
            if batch:
                self._commit(batch)

    def _commit(self, batch: list) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with store.group(self.engine):
                combined: dict[Callable, list[int]] = {}
                for index, (fn, args, kwargs, _) in enumerate(batch):
                    if fn is _COMBINED:
                        combined.setdefault(args[0], []).append(index)
                        outcomes.append((True, None))  # filled in below
                        continue
                    try:
                        outcomes.append((True, fn(*args, **kwargs)))
                    except Exception as exc:  # this caller's error; the rest go on
                        outcomes.append((False, exc))
                for fn_many, indexes in combined.items():
                    try:
                        # A savepoint of its own: if it fails half way, none of it stays.
                        with store.write(self.engine):
                            values = fn_many([batch[i][1][1] for i in indexes])
                        for i, value in zip(indexes, values, strict=True):
                            outcomes[i] = (True, value)
                    except Exception as exc:
                        for i in indexes:
                            outcomes[i] = (False, exc)
        except Exception as exc:  # the transaction itself failed: nothing was written
            log.warning("group of %d operations failed to commit: %s", len(batch), exc)
            outcomes = [(False, exc)] * len(batch)
        self.groups += 1
        self.operations += len(batch)
        # asyncio futures are resolved on their own loop, one wake-up per loop per group
        # (a wake-up per request was a visible share of a busy worker's time).
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, _, _, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(future, asyncio.Future):
                by_loop.setdefault(future.get_loop(), []).append((future, outcome))
            else:
                _resolve(future, outcome)
        for loop, resolved in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, resolved)
            except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
                pass


def _resolve(future, outcome: tuple[bool, Any]) -> None:
    if future.done():  # an asyncio caller gave up (request cancelled)
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _resolve_all(resolved: list) -> None:
    for future, outcome in resolved:
        _resolve(future, outcome)
