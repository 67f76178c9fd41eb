"""The storage layer: the only code that talks to SQLAlchemy's engines and the drivers.

- ``engine.py``: engines for SQLite and PostgreSQL, with the settings they were made with;
- ``transactions.py``: units of work (:func:`write`, :func:`read`, :func:`group`) and
  SQLite's write gate;
- ``sql.py`` and ``queries.py``: the hot statements as named SQL, run on the driver's
  cursor, and how values are stored;
- ``stream.py``: bulk reads for exports, and the settled moment of PostgreSQL;
- ``migrate.py``: Alembic migrations.

Domain modules import from here (``from . import store``), never from the submodules'
internals, and never reach for a driver connection themselves (``tests/test_layers.py``).
"""

from .engine import (
    connection_budget,
    dispose,
    dispose_engines,
    get_engine,
    is_sqlite,
    make_engine,
    normalise_url,
    scrub_freed,
    settings_of,
)
from .health import Probe
from .listen import announce_final, can_listen, final_among, listen
from .migrate import check_exists, current_revision, downgrade, open_database, upgrade
from .sql import Query, sqlite_time, time_param
from .stream import ping, settled_before, stream_tuples
from .transactions import Tx, group, read, request_deadline, write

__all__ = [
    "Probe",
    "Query",
    "Tx",
    "check_exists",
    "connection_budget",
    "current_revision",
    "dispose",
    "dispose_engines",
    "downgrade",
    "open_database",
    "get_engine",
    "group",
    "is_sqlite",
    "make_engine",
    "normalise_url",
    "ping",
    "read",
    "request_deadline",
    "scrub_freed",
    "settings_of",
    "settled_before",
    "sqlite_time",
    "stream_tuples",
    "time_param",
    "announce_final",
    "can_listen",
    "final_among",
    "listen",
    "upgrade",
    "write",
]
