"""Retention and erasure: content leaves, the numbers stay.

*Content* is what a person wrote or could be identified by: an item's input, output,
retrieved sources and metadata, the corrections and comments of its reviews, and the
bodies of its webhook deliveries. Purging replaces it with nothing (JSON ``null``, an
empty list or object) and stamps ``items.purged_at``; what metrics and calibration need
stays: queue, confidence, route, status, verdicts, labels, reasons and every time.

- **Retention**: a queue's ``retention_days`` purges items created longer ago than that,
  in batches, by :func:`purge` (a background job, :func:`purge_job`, or
  ``reviewqueue purge``).
- **Erasure** of one subject's data: :func:`erase` (``DELETE /v1/items/{id}``,
  ``reviewqueue erase --queue Q --external-id X``) purges one item at once, replaces its
  ``external_id`` by a digest, cancels its pending webhook deliveries, records an
  ``item.erased`` event without any content, and adds the erasure to the manifests of the
  export files that contained the item (the files themselves are the dataset owner's
  to rewrite; the manifest tells them which rows to drop).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from . import clock, events, jobs, keys, outbox, store, webhooks
from .errors import ItemNotFound, QueueNotFound
from .models import ExportRun, Item, Queue, Review, WebhookDelivery
from .vocab import WAITING, EventKind, Status

log = logging.getLogger(__name__)
BATCH = 1000
#: The body a delivery keeps once its item's content is gone.
_PURGED_BODY = '{"content": "purged"}'


def _scrub(tx: store.Tx, item_ids: list[str], now, *, again: bool = False) -> list[str]:
    """Remove the content of the items (those not purged already, unless ``again``);
    returns the ids it scrubbed."""
    stmt = update(Item).where(Item.id.in_(item_ids))
    if not again:
        stmt = stmt.where(Item.purged_at.is_(None))
    item_ids = list(
        tx.execute(
            stmt.values(
                input=None, output=None, context=[], meta={}, purged_at=now, updated_at=now
            ).returning(Item.id)
        ).scalars()
    )
    if item_ids:
        tx.execute(update(Review).where(Review.item_id.in_(item_ids)).values(final_output=None, comment=None))
        tx.execute(
            update(WebhookDelivery).where(WebhookDelivery.item_id.in_(item_ids)).values(body=_PURGED_BODY)
        )
    return item_ids


def purge(*, queue: str | None = None, engine=None, now=None) -> dict[str, int]:
    """Purge the content of items older than their queue's ``retention_days``; returns
    how many items per queue. Batches of :data:`BATCH` items, one transaction each.

    Any number of purgers may run at once (a leader runs it in a fleet, but a
    ``reviewqueue purge`` may run beside it): each batch locks the rows it scrubs
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's one writer) and counts only
    rows still unpurged, so every item is scrubbed and counted once."""
    engine = engine or store.get_engine()
    now = now or clock.now()
    with store.read(engine) as tx:
        if queue and tx.session.get(Queue, queue) is None:
            raise QueueNotFound(queue)
        stmt = select(Queue.name, Queue.retention_days).where(Queue.retention_days.is_not(None))
        if queue:
            stmt = stmt.where(Queue.name == queue)
        targets = tx.execute(stmt).all()
    done: dict[str, int] = {}
    for name, days in targets:
        cutoff = now - timedelta(days=days)
        while True:
            with store.write(engine) as tx:
                ids = list(
                    tx.execute(
                        select(Item.id)
                        .where(Item.queue == name, Item.created_at < cutoff, Item.purged_at.is_(None))
                        .limit(BATCH)
                        .with_for_update(skip_locked=True)
                    ).scalars()
                )
                if not ids:
                    break
                stamp = clock.now()
                ids = _scrub(tx, ids, stamp)
                if not ids:
                    continue
                events.record(
                    tx,
                    EventKind.ITEMS_PURGED,
                    "retention",
                    queue=name,
                    after={"count": len(ids), "retention_days": days, "created_before": clock.iso(cutoff)},
                )
            done[name] = done.get(name, 0) + len(ids)
    if done:
        store.scrub_freed(engine)
    return done


def erased_id(queue: str, external_id: str, settings) -> str:
    """What an erased item's ``external_id`` becomes: a MAC of it with the server key, so
    the caller's own id can still be matched by whoever holds the key (a support request
    about it), and cannot be confirmed by guessing without it (a plain SHA-256 could)."""
    mac = hmac.new(keys.key(settings), f"erased-id\0{queue}\0{external_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:48]


def erase(
    item_id: str | None = None,
    *,
    queue: str | None = None,
    external_id: str | None = None,
    actor: str,
    reason: str | None = None,
    engine=None,
) -> str:
    """Erase one item's content everywhere it is stored (by id, or by queue and
    external_id); returns the item id. Erasing again does nothing more."""
    engine = engine or store.get_engine()
    with store.write(engine) as tx:
        stmt = (
            select(Item).where(Item.id == item_id)
            if item_id
            else select(Item).where(Item.queue == queue, Item.external_id == external_id)
        )
        item = tx.session.scalars(stmt).first()
        if item is None:
            raise ItemNotFound(item_id or f"{queue}/{external_id}")
        if item.purged_at is not None and (item.external_id or "").startswith("erased:"):
            return item.id
        now = clock.now()
        # Every moment a file could have taken the item at: when it became final, and
        # when each of its decisions was made (an undone one may be in an older file).
        decided = [r.created_at for r in tx.session.scalars(select(Review).where(Review.item_id == item.id))]
        decided += [item.decided_at] if item.decided_at else []
        digest = None
        if item.external_id is not None:
            digest = "erased:" + erased_id(item.queue, item.external_id, store.settings_of(engine))
        waiting = item.status in WAITING
        tx.session.flush()
        _scrub(tx, [item.id], now, again=True)
        values = {"external_id": digest}
        if waiting:  # nobody is to review an item with no content: it leaves the queue
            values.update(status=Status.ERASED, lease_holder=None, lease_expires_at=None)
        tx.execute(update(Item).where(Item.id == item.id).values(**values))
        outbox.cancel(tx, item_id=item.id)
        events.record(
            tx,
            EventKind.ITEM_ERASED,
            actor,
            item_id=item.id,
            queue=item.queue,
            after={"reason": reason} if reason else None,
            at=now,
        )
        runs = list(tx.session.scalars(select(ExportRun).where(ExportRun.queue == item.queue)))
    # A POST of the item's content already in flight in some process finishes first:
    # once this returns, nothing about the item is sent.
    outbox.wait_sent(
        engine, item_id=item.id, timeout=webhooks.lease_for(store.settings_of(engine)).total_seconds()
    )
    store.scrub_freed(engine)  # no copy of the removed text left in SQLite's WAL
    for run in runs:  # the manifests of files that hold the item (by its decision times)
        if any(clock.parse(run.since) <= clock.parse(t) < clock.parse(run.until) for t in decided):
            _note_in_manifest(Path(run.path), item.id, now)
    return item.id


def _note_in_manifest(data_file: Path, item_id: str, when) -> None:
    manifest = data_file.parent / "_manifest.json"
    if not manifest.exists():
        return
    try:
        content = json.loads(manifest.read_text())
    except ValueError:
        log.warning("manifest %s is not JSON; erasure of %s not noted there", manifest, item_id)
        return
    content.setdefault("erasures", []).append({"item_id": item_id, "erased_at": clock.iso(when)})
    tmp = manifest.with_name("._manifest.json.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, manifest.stat().st_mode & 0o777))
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest)


def purge_job(*, interval: float = 3600.0) -> jobs.Job:
    """Retention as a background job led by one process of the deployment."""

    def run(engine) -> bool:
        purged = purge(engine=engine)
        if purged:
            log.info("retention purged %s", purged)
        return False

    return jobs.Job("retention", run, interval)
