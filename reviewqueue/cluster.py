"""What every process of a deployment must agree on, checked against the shared database
when a process starts.

**One key.** The server key (``keys.py``) decrypts webhook secrets and keys the audit
chain. Left unset on a second host, that host made a key of its own: it could not sign
webhooks whose secrets the first host stored, and its audit seals broke verification.
So the first process to start records a keyed fingerprint of its key in the database
(``HMAC-SHA256(key, "reviewqueue key fingerprint")``, which tells nothing about the key),
and every later process compares: a process with another key refuses to start, and one
that has no key at all does not make one when the database already knows another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from pathlib import Path

from . import clock, keys, store
from .errors import KeyMismatch
from .models import ClusterFact
from .store import queries

KEY_FINGERPRINT = "key_fingerprint"
DATABASE_ID = "database_id"


def database_id(*, engine=None) -> str:
    """This database's own id, made when it is first asked for: what an audit anchor
    file (audit.py) says it belongs to."""
    with store.read(engine) as tx:
        fact = tx.session.get(ClusterFact, DATABASE_ID)
        if fact is not None:
            return fact.value
    with store.write(engine) as tx:
        queries.lock_key(tx, "cluster-facts")  # nodes starting at once on a new database
        fact = tx.session.get(ClusterFact, DATABASE_ID)
        if fact is None:
            fact = ClusterFact(name=DATABASE_ID, value=uuid.uuid4().hex, updated_at=clock.now())
            tx.session.add(fact)
        return fact.value


def fingerprint(key: bytes) -> str:
    raw = base64.urlsafe_b64decode(key)
    return hmac.new(raw, b"reviewqueue key fingerprint v1", hashlib.sha256).hexdigest()[:32]


def recorded_fingerprint(*, engine=None) -> str | None:
    with store.read(engine) as tx:
        fact = tx.session.get(ClusterFact, KEY_FINGERPRINT)
        return fact.value if fact else None


def check_key(*, engine=None) -> str:
    """Make sure this process's server key is the deployment's; returns its fingerprint.
    Raises :class:`KeyMismatch`, with what to set, when it is not."""
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    known = recorded_fingerprint(engine=engine)
    if known is not None and not settings.secret_key and not Path(settings.secret_key_file).exists():
        raise KeyMismatch(
            f"this database was set up with a server key (fingerprint {known}) and this host has none: "
            "set REVIEWQUEUE_SECRET_KEY to the key of the other hosts (or copy their "
            f"{settings.secret_key_file}) before starting reviewqueue here"
        )
    mine = fingerprint(keys.key(settings))
    if known is None:
        with store.write(engine) as tx:
            queries.lock_key(tx, "cluster-facts")  # nodes starting at once on a new database
            fact = tx.session.get(ClusterFact, KEY_FINGERPRINT)
            if fact is None:
                tx.session.add(ClusterFact(name=KEY_FINGERPRINT, value=mine, updated_at=clock.now()))
                return mine
            known = fact.value
    if known != mine:
        source = "REVIEWQUEUE_SECRET_KEY" if settings.secret_key else settings.secret_key_file
        raise KeyMismatch(
            f"the server key of this host ({source}, fingerprint {mine}) is not the key this database "
            f"was set up with (fingerprint {known}): set REVIEWQUEUE_SECRET_KEY to the same key on every "
            "host; webhook secrets and the audit chain need it"
        )
    return mine


def record_fingerprint(key: bytes, *, engine=None) -> None:
    """Record ``key`` as the deployment's (after a key rotation)."""
    with store.write(engine) as tx:
        queries.lock_key(tx, "cluster-facts")
        fact = tx.session.get(ClusterFact, KEY_FINGERPRINT)
        if fact is None:
            tx.session.add(ClusterFact(name=KEY_FINGERPRINT, value=fingerprint(key), updated_at=clock.now()))
        else:
            fact.value, fact.updated_at = fingerprint(key), clock.now()
