"""Background work that runs correctly with any number of processes on one database.

Two kinds of job:

- **Led jobs** (sealing the audit log, purging content past its retention): one process
  of the deployment runs each at a time. It holds a lease row in ``job_leases``
  (:func:`lead`), renewed every round; when the leader dies its lease lapses after
  :data:`LEASE_SECONDS` and another process takes over. A lease row, not a PostgreSQL
  advisory lock, so it works on SQLite and behind PgBouncer in transaction mode too.
  The jobs are safe to overlap anyway (a seal checks the chain's last link under a
  lock, a purge locks the rows it scrubs): the lease saves work, it is not what makes
  them correct.
- **Shared jobs** (webhook delivery, reading the database's clock): every process runs
  them; the work splits by row locks (``outbox.claim``).

``reviewqueue worker`` runs only these; ``reviewqueue api`` and ``up`` run them beside
the API unless given ``--no-background``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import insert, update

from . import clock, store
from .models import JobLease

log = logging.getLogger(__name__)

#: A leader that has not renewed its lease for this long is taken over.
LEASE_SECONDS = 15.0
#: This process, as it signs its leases.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

_leases = JobLease.__table__


def lead(name: str, *, holder: str = HOLDER, seconds: float = LEASE_SECONDS, engine=None) -> bool:
    """Take or renew the lease of job ``name`` for ``holder``; whether it holds it now."""
    engine = engine or store.get_engine()
    with store.write(engine) as tx:
        now = clock.now()
        taken = tx.execute(
            update(_leases)
            .where(
                _leases.c.name == name,
                (_leases.c.holder == holder) | (_leases.c.expires_at < now) | _leases.c.holder.is_(None),
            )
            .values(holder=holder, expires_at=now + timedelta(seconds=seconds))
        ).rowcount
        if taken:
            return True
    try:
        with store.write(engine) as tx:
            now = clock.now()
            tx.execute(
                insert(_leases).values(
                    name=name, holder=holder, expires_at=now + timedelta(seconds=seconds), acquired_at=now
                )
            )
        return True
    except Exception:  # another process inserted it first: it leads
        return False


def resign(name: str, *, holder: str = HOLDER, engine=None) -> None:
    """Give the lease up now (a clean stop), so another process takes over at once."""
    with store.write(engine) as tx:
        tx.execute(
            update(_leases)
            .where(_leases.c.name == name, _leases.c.holder == holder)
            .values(holder=None, expires_at=clock.now())
        )


def leaders(*, engine=None) -> dict[str, tuple[str | None, object]]:
    """Every job's holder and lease expiry."""
    with store.read(engine) as tx:
        return {r.name: (r.holder, r.expires_at) for r in tx.execute(_leases.select()).all()}


@dataclass
class Job:
    name: str
    #: What one round does, given the engine.
    run: Callable
    #: Seconds between rounds (a round that reports more work waiting goes again at once).
    interval: float
    #: One process at a time (a lease), or every process.
    led: bool = True


class Runner:
    """Runs jobs in one background thread each until stopped."""

    def __init__(self, jobs: list[Job], engine=None, *, holder: str = HOLDER):
        self.jobs = jobs
        self.engine = engine
        self.holder = holder
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Runner:
        for job in self.jobs:
            thread = threading.Thread(
                target=self._loop, args=(job,), name=f"reviewqueue-{job.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, job: Job) -> None:
        leading = False
        next_run = 0.0  # monotonic: the first round runs at start
        # A leader renews its lease well within LEASE_SECONDS, whatever the job's pace.
        tick = min(job.interval, LEASE_SECONDS / 3) if job.led else job.interval
        while not self._stop.is_set():
            again = False
            try:
                if job.led:
                    was, leading = leading, lead(job.name, holder=self.holder, engine=self.engine)
                    if leading != was:
                        log.info(
                            "%s %s job %s", self.holder, "leads" if leading else "no longer leads", job.name
                        )
                if (leading or not job.led) and time.monotonic() >= next_run:
                    again = bool(job.run(self.engine))
                    next_run = 0.0 if again else time.monotonic() + job.interval
            except Exception:  # try again next round
                log.exception("background job %s failed", job.name)
            if not again:
                self._stop.wait(tick)
        if job.led and leading:
            try:
                resign(job.name, holder=self.holder, engine=self.engine)
            except Exception:
                log.warning("could not give up the lease of %s; it lapses in %s s", job.name, LEASE_SECONDS)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
