"""Rotating the server key (``reviewqueue key rotate``).

The key (keys.py) encrypts webhook signing secrets and Slack-compatible alert URLs at
rest, MACs every audit event and keys the seals' hash chain. Rotating it:

1. refuses while another process leads a background job (every process of the
   deployment must be stopped: one still running would keep writing with the old key);
2. seals every event written so far and verifies the whole audit log with the old key:
   a log that does not verify is not rotated (the rotation must never bless an edit);
3. in one transaction: re-encrypts the stored secrets with the new key, stamps every
   seal made before with the old key's fingerprint, records the new key's fingerprint
   as the deployment's (cluster.py) and writes a ``key.rotated`` event MACed with the
   new key (it fails, changing nothing, if an event was written since step 2).

Seals keep their chain values, so every host's anchor file stays valid; the old key is
kept *retired* (``REVIEWQUEUE_SECRET_KEYS_RETIRED``, or the file beside the key file)
only to verify the seals made with it. New events and seals use the new key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import func, select, update

from . import audit, clock, cluster, jobs, keys, store
from . import events as event_log
from .errors import Conflict, invalid
from .models import AuditSeal, ClusterFact, NotifyChannel, Webhook
from .store import queries
from .vocab import EventKind


@dataclass
class Rotated:
    old_fingerprint: str
    new_fingerprint: str
    #: Seals made with the old key (verified with it, retired, from now on).
    seals: int
    secrets: int
    #: Where the new key was written (a key file), or None (REVIEWQUEUE_SECRET_KEY: set it yourself).
    key_file: str | None


def new_key() -> str:
    return Fernet.generate_key().decode()


def rotate(new: str | None = None, *, actor: str = "cli", engine=None) -> Rotated:
    engine = engine or store.get_engine()
    settings = store.settings_of(engine)
    old = keys.key(settings)
    new = (new or new_key()).strip()
    try:
        new_raw = keys.parse(new)
    except Exception as exc:  # BadSetting: says what a key looks like
        raise invalid("key", str(exc)) from None
    if new_raw == old:
        raise invalid("key", "the new key is the key in use; give another one (or none: one is made)")
    now = clock.now()
    busy = [
        f"{name} (led by {holder} until {clock.iso(until)})"
        for name, (holder, until) in jobs.leaders(engine=engine).items()
        if holder and clock.parse(until) > now
    ]
    if busy:
        raise Conflict(
            "not rotating: other reviewqueue processes are running ("
            + "; ".join(busy)
            + "). Stop every API, "
            "worker and review app of this database, wait for their leases to lapse (15 s), then rotate"
        )
    while audit.seal(engine=engine) is not None:
        pass
    check = audit.verify(engine=engine)
    if not check.ok:
        raise Conflict(f"not rotating: the audit log does not verify with the current key: {check.problem}")
    old_fp, new_fp = cluster.fingerprint(old), cluster.fingerprint(new_raw)
    with store.write(engine) as tx:
        queries.lock_key(tx, "audit-seal")
        queries.lock_key(tx, "cluster-facts")
        latest = tx.session.scalars(select(AuditSeal).order_by(AuditSeal.number.desc()).limit(1)).first()
        since = (
            latest.upto
            if latest is not None and latest.upto is not None
            else queries.SEAL_KEY_START[tx.dialect]
        )
        if queries.EVENTS_BY_KEY.first(
            tx, {"since": since, "upto": 2**62, "after_key": -1, "after_id": -1, "limit": 1}
        ):
            raise Conflict(
                "not rotating: events were written while the log was being sealed; another process is running"
            )
        tx.execute(
            update(AuditSeal).where(AuditSeal.key_fingerprint.is_(None)).values(key_fingerprint=old_fp)
        )
        seals = tx.execute(
            select(func.count()).select_from(AuditSeal).where(AuditSeal.key_fingerprint == old_fp)
        ).scalar()
        new_settings = settings.model_copy(update={"secret_key": new, "secret_keys_retired": None})
        secrets = 0
        for hook in tx.session.scalars(select(Webhook)):
            hook.secret = keys.seal(keys.unseal(hook.secret, settings), new_settings)
            secrets += 1
        for channel in tx.session.scalars(select(NotifyChannel).where(NotifyChannel.kind == "slack")):
            channel.target = keys.seal(keys.unseal(channel.target, settings), new_settings)
            secrets += 1
        fact = tx.session.get(ClusterFact, cluster.KEY_FINGERPRINT)
        if fact is None:
            tx.session.add(ClusterFact(name=cluster.KEY_FINGERPRINT, value=new_fp, updated_at=now))
        else:
            fact.value, fact.updated_at = new_fp, now
        tx.session.flush()
        _record_with(tx, new_raw, actor, {"old": old_fp, "new": new_fp, "seals": seals, "secrets": secrets})
    key_file = None
    if not settings.secret_key:  # a key file: replace it, and keep the old key beside it, retired
        key_file = settings.secret_key_file
        _retire(Path(key_file), old, new)
    return Rotated(old_fp, new_fp, seals, secrets, key_file)


def _record_with(tx, key: bytes, actor: str, after: dict) -> None:
    """The ``key.rotated`` event, MACed with the new key (the process still holds the old)."""
    at = clock.now()
    nonce = os.urandom(8).hex()
    kind = EventKind.KEY_ROTATED
    mac = event_log.fields_mac(
        event_log.event_key_of(key), nonce, clock.iso(at), actor, kind, None, None, None, after
    )
    queries.INSERT_EVENT.run(
        tx,
        {
            "at": at,
            "actor": actor,
            "kind": kind,
            "item_id": None,
            "queue": None,
            "before": None,
            "after": after,
            "mac": f"{nonce}:{mac}",
        },
    )


def _retire(path: Path, old: bytes, new: str) -> None:
    retired = Path(str(path) + ".retired")
    fd = os.open(retired, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, old + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, new.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    keys.forget()
