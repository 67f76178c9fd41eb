"""Waiting for a human: apps that ask for an item with ``?wait=SECONDS`` are answered
as soon as it is final (decided, auto-accepted, or decided by its deadline fallback).

One :class:`Notifier` per process and database does the asking for all of them:
PostgreSQL tells it (``LISTEN``/``NOTIFY``, see ``store/listen.py``), with a check of
every waited-for item every :data:`SAFETY_SECONDS` in case a notification was missed
while reconnecting; on SQLite (and behind PgBouncer in transaction mode) it asks the
database for all waited-for items in one query every :data:`POLL_SECONDS`. A waiter
costs a future and a set entry, never a query or a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from . import store

#: SQLite (or no LISTEN): how often the waited-for items are looked at.
POLL_SECONDS = 0.25
#: With LISTEN: how often they are looked at anyway.
SAFETY_SECONDS = 5.0
#: The longest a request may wait.
MAX_WAIT_SECONDS = 60.0

_all: weakref.WeakSet = weakref.WeakSet()


class Notifier:
    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listening = store.can_listen(engine)
        _all.add(self)

    # --- the threads -------------------------------------------------------------------

    def start(self) -> Notifier:
        if self.listening:
            self._spawn("reviewqueue-listen", self._listen)
        self._spawn("reviewqueue-waiting", self._poll)
        return self

    def _spawn(self, name, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _listen(self) -> None:
        store.listen(self.engine, lambda item_id: self.wake([item_id]), self._kick.set, self._stop)

    def _poll(self) -> None:
        interval = SAFETY_SECONDS if self.listening else POLL_SECONDS
        while not self._stop.is_set():
            self._kick.wait(interval)
            self._kick.clear()
            waited = self.waited()
            if not waited or self._stop.is_set():
                continue
            try:
                self.wake(store.final_among(self.engine, waited))
            except Exception:  # the database is away: waiters time out and answer as they are
                pass

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self.wake_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- waiters -------------------------------------------------------------------------

    def waited(self) -> list[str]:
        with self._lock:
            return list(self._waiters)

    def count(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def wake(self, item_ids) -> None:
        with self._lock:
            woken = [w for i in item_ids for w in self._waiters.pop(i, ())]
        for loop, future in woken:
            loop.call_soon_threadsafe(_done, future)

    def wake_all(self) -> None:
        self.wake(self.waited())

    @contextmanager
    def waiter(self, item_id: str) -> Iterator[asyncio.Future]:
        """A future set once the item may be final. Register before reading the item,
        so a decision between the read and the wait is not missed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = (loop, future)
        with self._lock:
            self._waiters.setdefault(item_id, set()).add(entry)
        try:
            yield future
        finally:
            with self._lock:
                mine = self._waiters.get(item_id)
                if mine is not None:
                    mine.discard(entry)
                    if not mine:
                        del self._waiters[item_id]


def _done(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def until(future: asyncio.Future, seconds: float) -> bool:
    """Wait for ``future`` at most ``seconds``; whether it came."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout=seconds)
        return True
    except TimeoutError:
        return False


def wake_everyone() -> None:
    """Answer every waiting request now (a draining process)."""
    for notifier in list(_all):
        notifier.wake_all()
