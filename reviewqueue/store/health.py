"""Readiness: does the database answer, asked over a connection of its own.

A load balancer asks every node every few seconds. Asked through the pool, the check
waited behind the requests when the pool was busy (a lock on ``items`` with 400
readers: ``/healthz`` stopped answering and the balancer took every node out at once).
So a :class:`Probe` keeps one connection outside the pool, reopened when it breaks,
and bounds each check: connecting, and the statement itself, within ``timeout``
seconds. It costs each API process one connection of its budget.
"""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy.engine import Engine


class Probe:
    def __init__(self, engine: Engine, timeout: float = 2.0):
        self.engine = engine
        self.timeout = timeout
        self._conn = None
        self._lock = threading.Lock()

    def _connect(self):
        url = self.engine.url
        if self.engine.dialect.name == "sqlite":
            return sqlite3.connect(url.database or ":memory:", timeout=self.timeout, check_same_thread=False)
        cargs, cparams = self.engine.dialect.create_connect_args(url)
        cparams = {**cparams, "connect_timeout": max(1, round(self.timeout)), "prepare_threshold": None}
        return self.engine.dialect.loaded_dbapi.connect(*cargs, **cparams)

    def check(self) -> None:
        """Return when the database answered ``SELECT 1``; raise otherwise (or when
        another check is still running after ``timeout``)."""
        if not self._lock.acquire(timeout=self.timeout):
            raise TimeoutError("the previous readiness check has not finished")
        try:
            if self._conn is None:
                self._conn = self._connect()
            try:
                if self.engine.dialect.name == "sqlite":
                    self._conn.execute("SELECT 1").fetchall()
                else:
                    # SET LOCAL: the limit ends with the transaction (behind a pooler in
                    # transaction mode the next one may run on another server connection).
                    self._conn.execute(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")
                    self._conn.execute("SELECT 1").fetchall()
                    self._conn.rollback()
            except Exception:
                self.close_unlocked()
                raise
        finally:
            self._lock.release()

    def close_unlocked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()
