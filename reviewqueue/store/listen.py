"""Being told when items become final, without asking the database per waiter.

- PostgreSQL: the transaction that makes an item final runs ``pg_notify`` on
  :data:`CHANNEL` with the item's id (:func:`announce_final`; delivered at commit, never
  for a rolled-back one), and one connection per process listens (:func:`listen`).
  Behind PgBouncer in transaction mode a session cannot keep listening: such a
  deployment (``REVIEWQUEUE_DB_TRANSACTION_POOLING``) polls instead.
- SQLite (and the poll above): :func:`final_among` answers for every waited-for item in
  one query per round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.engine import Engine, make_url

from ..vocab import FINAL
from .engine import is_sqlite, settings_of
from .transactions import Tx, read

log = logging.getLogger("reviewqueue.store")

CHANNEL = "reviewqueue_final"


def can_listen(engine: Engine) -> bool:
    return not is_sqlite(engine) and not settings_of(engine).db_transaction_pooling


def announce_final(tx: Tx, item_id: str) -> None:
    """Tell the listening processes, when ``tx`` commits, that the item is final."""
    if tx.dialect == "postgresql":
        tx.cursor().execute("SELECT pg_notify(%s, %s)", (CHANNEL, item_id))


def final_among(engine: Engine, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are final now: one query per 500 ids."""
    from ..models import Item

    wanted = list(ids)
    found: set[str] = set()
    with read(engine) as tx:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(
                tx.execute(
                    select(Item.id).where(Item.id.in_(chunk), Item.status.in_(sorted(FINAL)))
                ).scalars()
            )
    return found


def listen(
    engine: Engine, on_final: Callable[[str], None], on_connect: Callable[[], None], stop: threading.Event
):
    """Listen on :data:`CHANNEL` until ``stop`` is set, calling ``on_final(item_id)`` per
    notification; reconnects after a failure, calling ``on_connect()`` each time it is
    listening again (what was announced meanwhile was missed: the caller checks)."""
    import psycopg  # PostgreSQL deployments only

    url = make_url(engine.url.render_as_string(hide_password=False))
    conninfo = psycopg.conninfo.make_conninfo(
        host=url.host or "",
        port=url.port or 5432,
        dbname=url.database or "",
        user=url.username or "",
        **({"password": url.password} if url.password else {}),
        **{k: v for k, v in url.query.items() if isinstance(v, str)},
    )
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                on_connect()
                while not stop.is_set():
                    for note in conn.notifies(timeout=1.0):
                        on_final(note.payload)
        except Exception as exc:  # the server went away: listen again shortly
            if not stop.is_set():
                log.warning("listening for final items failed (%s); trying again in 1 s", exc)
                stop.wait(1.0)
