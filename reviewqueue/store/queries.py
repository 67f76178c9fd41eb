"""The hot statements, by name: claiming, deciding, the audit log, the webhook outbox and
bulk ingest. Everything else goes through SQLAlchemy (``tx.session`` / ``tx.execute``).

The locking is here and nowhere else:
- claims pick the next item inside the leasing ``UPDATE`` with ``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so concurrent reviewers each lock a different row without
  waiting on one another; on SQLite the write transaction (``BEGIN IMMEDIATE``) already
  holds the one write lock;
- decisions lock the item row (``FOR UPDATE``) before checking who holds it.
"""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime

from ..vocab import DeliveryStatus, Status
from .sql import Query, time_param
from .transactions import Tx

P, R = Status.PENDING, Status.IN_REVIEW

# fmt: off
# (The SQL is laid out for reading; the formatter would put every argument on a line.)

# --- claims ---------------------------------------------------------------------------

LEASE_SECONDS = Query("lease_seconds", "SELECT lease_seconds FROM queues WHERE name = :queue")

#: What a claim needs to know of its queue.
CLAIM_RULES = Query("claim_rules", """
    SELECT lease_seconds, reviews_required, reviewers FROM queues WHERE name = :queue
""")

#: One look at a queue's leases: the reviewer's own live one, and expired ones.
LEASES = Query("leases", f"""
    SELECT id, lease_holder, lease_expires_at FROM items
    WHERE queue = :queue AND status = '{R}' AND (lease_holder = :reviewer OR lease_expires_at <= :now)
    ORDER BY claim_order @skip_locked
""")

RENEW = Query("renew", f"""
    UPDATE items SET status = '{R}', lease_expires_at = :expires, updated_at = :now WHERE id = :item_id RETURNING *
""")

#: An expired lease: the item waits again, and remembers its last holder, whose late
#: decision is still accepted until someone else claims it (claims.held_item).
EXPIRE = Query("expire", f"""
    UPDATE items SET status = '{P}', lease_expires_at = NULL, updated_at = :now
    WHERE id = :item_id AND status = '{R}'
""")

#: Pick and lease in one statement: the most urgent pending item (claim_order).
LEASE_NEXT = Query("lease_next", f"""
    UPDATE items SET status = '{R}', lease_holder = :reviewer, lease_expires_at = :expires, updated_at = :now
    WHERE id = (SELECT id FROM items WHERE queue = :queue AND status = '{P}'
                ORDER BY claim_order LIMIT 1 @skip_locked)
      AND status = '{P}'
    RETURNING *
""")

#: The same, passing over items the reviewer skipped (a JSON array of ids).
LEASE_NEXT_EXCLUDING = Query("lease_next_excluding", {
    "sqlite": f"""
        UPDATE items SET status = '{R}', lease_holder = :reviewer, lease_expires_at = :expires, updated_at = :now
        WHERE id = (SELECT id FROM items WHERE queue = :queue AND status = '{P}'
                    AND id NOT IN (SELECT value FROM json_each(:exclude))
                    ORDER BY claim_order LIMIT 1)
          AND status = '{P}'
        RETURNING *
    """,
    "postgresql": f"""
        UPDATE items SET status = '{R}', lease_holder = :reviewer, lease_expires_at = :expires, updated_at = :now
        WHERE id = (SELECT id FROM items WHERE queue = :queue AND status = '{P}'
                    AND id NOT IN (SELECT jsonb_array_elements_text(:exclude))
                    ORDER BY claim_order LIMIT 1 FOR UPDATE SKIP LOCKED)
          AND status = '{P}'
        RETURNING *
    """,
}, json=["exclude"])

#: Several reviewers per item: the most urgent pending item this reviewer has not
#: decided (nor skipped: a JSON array of ids). Items part-way through their reviews
#: sort first (claim_order), so the ones a reviewer must pass over stay few.
LEASE_NEXT_UNDECIDED = Query("lease_next_undecided", {
    "sqlite": f"""
        UPDATE items SET status = '{R}', lease_holder = :reviewer, lease_expires_at = :expires, updated_at = :now
        WHERE id = (SELECT id FROM items WHERE queue = :queue AND status = '{P}'
                    AND id NOT IN (SELECT value FROM json_each(:exclude))
                    AND NOT EXISTS (SELECT 1 FROM reviews WHERE reviews.item_id = items.id
                                    AND reviews.reviewer = :reviewer AND reviews.undone_at IS NULL)
                    ORDER BY claim_order LIMIT 1)
          AND status = '{P}'
        RETURNING *
    """,
    "postgresql": f"""
        UPDATE items SET status = '{R}', lease_holder = :reviewer, lease_expires_at = :expires, updated_at = :now
        WHERE id = (SELECT id FROM items WHERE queue = :queue AND status = '{P}'
                    AND id NOT IN (SELECT jsonb_array_elements_text(:exclude))
                    AND NOT EXISTS (SELECT 1 FROM reviews WHERE reviews.item_id = items.id
                                    AND reviews.reviewer = :reviewer AND reviews.undone_at IS NULL)
                    ORDER BY claim_order LIMIT 1 FOR UPDATE SKIP LOCKED)
          AND status = '{P}'
        RETURNING *
    """,
}, json=["exclude"])

RELEASE = Query("release", f"""
    UPDATE items SET status = '{P}', lease_holder = NULL, lease_expires_at = NULL, updated_at = :now
    WHERE id = :item_id RETURNING *
""")

# --- decisions ------------------------------------------------------------------------

ITEM_FOR_UPDATE = Query("item_for_update", "SELECT * FROM items WHERE id = :item_id @for_update")

#: The item with its queue's rules, in one round trip (a decision needs both).
ITEM_AND_RULES_FOR_UPDATE = Query("item_and_rules_for_update", """
    SELECT items.*, queues.labels AS q_labels, queues.reject_reasons AS q_reject_reasons,
           queues.reviews_required AS q_reviews_required, queues.consensus AS q_consensus,
           queues.redaction AS q_redaction, queues.output_schema AS q_output_schema
    FROM items JOIN queues ON queues.name = items.queue
    WHERE items.id = :item_id @for_update_of_items
""", json_columns=["q_labels", "q_reject_reasons", "q_redaction", "q_output_schema"])

#: What redaction removed from an item, after a reviewer's text added to it.
SET_REDACTIONS = Query("set_redactions", """
    UPDATE items SET redactions = :redactions WHERE id = :item_id
""", json=["redactions"])

#: The reviewers' decisions on an item that still count (not undone, not an adjudication,
#: made in its present queue: an escalated item starts afresh).
ACTIVE_REVIEWS = Query("active_reviews", """
    SELECT * FROM reviews WHERE item_id = :item_id AND undone_at IS NULL AND adjudication = :no
      AND queue = (SELECT queue FROM items WHERE id = :item_id) ORDER BY id
""")

INSERT_REVIEW = Query("insert_review", """
    INSERT INTO reviews (item_id, queue, reviewer, verdict, final_output, final_label, reason, comment,
                         seconds_spent, edit_distance, created_at, adjudication, after_deadline, changed_fields)
    VALUES (:item_id, :queue, :reviewer, :verdict, :final_output, :final_label, :reason, :comment,
            :seconds_spent, :edit_distance, :now, :adjudication, :after_deadline, :changed_fields)
    RETURNING *
""", json=["final_output", "changed_fields"])

#: The final decision. Returns the columns it changes, to lay over the row the decision locked.
DECIDED = Query("decided", """
    UPDATE items SET status = :status, lease_holder = NULL, lease_expires_at = NULL, decided_at = :now,
                     updated_at = :now, final_review_id = :review_id, reviews_done = :done, agreement = :agreement
    WHERE id = :item_id
    RETURNING status, lease_holder, lease_expires_at, decided_at, updated_at, final_review_id, reviews_done,
              agreement
""")

#: A decision that is not the last one needed: the item waits for the next reviewer
#: (``pending``), or for a lead when the decisions disagree (``disputed``).
AWAITING = Query("awaiting", """
    UPDATE items SET status = :status, lease_holder = NULL, lease_expires_at = NULL, updated_at = :now,
                     reviews_done = :done, claim_order = :claim_order
    WHERE id = :item_id
    RETURNING status, lease_holder, lease_expires_at, updated_at, reviews_done, claim_order
""")

REVIEW_FOR_UPDATE = Query("review_for_update", "SELECT * FROM reviews WHERE id = :review_id @for_update")

MARK_UNDONE = Query("mark_undone", "UPDATE reviews SET undone_at = :now WHERE id = :review_id")

#: An undone decision: the item goes back to its reviewer under a fresh lease.
UNDECIDE = Query("undecide", f"""
    UPDATE items SET status = '{R}', lease_holder = :reviewer, lease_expires_at = :expires, decided_at = NULL,
                     updated_at = :now, reviews_done = :done, final_review_id = NULL, agreement = NULL
    WHERE id = :item_id RETURNING *
""")

# --- deadlines (deadlines.py) -----------------------------------------------------------
# Both walk ix_items_due, which holds only waiting items whose deadline has not passed.

_WAITING_SQL = f"status IN ('{P}', '{R}', '{Status.DISPUTED}')"

#: Items whose deadline has come, most overdue first.
DEADLINES_DUE = Query("deadlines_due", f"""
    SELECT id FROM items
    WHERE deadline_at IS NOT NULL AND deadline_state <> 'passed' AND {_WAITING_SQL} AND deadline_at <= :now
    ORDER BY deadline_at LIMIT :limit
""")

#: Items of a queue due before :horizon that were not warned yet.
DEADLINES_NEAR = Query("deadlines_near", f"""
    SELECT id FROM items
    WHERE deadline_at IS NOT NULL AND deadline_state <> 'passed' AND {_WAITING_SQL} AND deadline_at <= :horizon
      AND deadline_state = '' AND queue = :queue
    ORDER BY deadline_at LIMIT :limit
""")

#: How many of a queue's waiting items are due before :horizon (the due-soon gauge).
DEADLINES_SOON = Query("deadlines_soon", f"""
    SELECT count(*) AS n FROM items
    WHERE deadline_at IS NOT NULL AND deadline_state <> 'passed' AND {_WAITING_SQL} AND deadline_at <= :horizon
      AND queue = :queue
""")

#: The item, locked, with what its queue does at the deadline.
ITEM_FOR_DEADLINE = Query("item_for_deadline", """
    SELECT items.*, queues.on_deadline AS q_on_deadline, queues.deadline_reason AS q_deadline_reason,
           queues.escalate_to AS q_escalate_to, queues.warn_seconds AS q_warn_seconds
    FROM items JOIN queues ON queues.name = items.queue
    WHERE items.id = :item_id @for_update_of_items
""")

MARK_WARNED = Query("mark_warned", """
    UPDATE items SET deadline_state = 'warned' WHERE id = :item_id
""")

#: The fallback decided it: final, and its last holder remembered (a late decision of
#: theirs is kept as evaluation data: decisions.py).
TIME_OUT = Query("time_out", f"""
    UPDATE items SET status = '{Status.TIMED_OUT}', deadline_state = 'passed', deadline_action = :action,
                     fallback_reason = :reason, lease_expires_at = NULL, decided_at = :now, updated_at = :now
    WHERE id = :item_id RETURNING *
""")

#: The deadline passed and the item stays where it is (``keep``), late.
PASSED = Query("passed", """
    UPDATE items SET deadline_state = 'passed', deadline_action = :action, updated_at = :now
    WHERE id = :item_id RETURNING *
""")

#: Moved to another queue at the deadline: waiting afresh there, under that queue's
#: deadline if it has one.
ESCALATE = Query("escalate", f"""
    UPDATE items SET queue = :queue, status = '{P}', lease_holder = NULL, lease_expires_at = NULL,
                     reviews_done = 0, deadline_at = :deadline_at, deadline_state = '', deadline_action = :action,
                     claim_order = :claim_order, updated_at = :now
    WHERE id = :item_id RETURNING *
""")

#: A reviewer's decision after the fallback: evaluation data from now on (exports read
#: items by decided_at, so it moves), the fallback's answer still stands.
LATE_DECIDED = Query("late_decided", """
    UPDATE items SET lease_holder = NULL, decided_at = :now, updated_at = :now, final_review_id = :review_id,
                     reviews_done = reviews_done + 1, agreement = 1.0
    WHERE id = :item_id RETURNING *
""")

EXTERNAL_ID_TAKEN = Query("external_id_taken", """
    SELECT id FROM items WHERE queue = :queue AND external_id = :external_id
""")

# --- the audit log and the outbox ----------------------------------------------------

INSERT_EVENT = Query("insert_event", """
    INSERT INTO events (at, actor, kind, item_id, queue, before, after, mac)
    VALUES (:at, :actor, :kind, :item_id, :queue, :before, :after, :mac)
""", json=["before", "after"])

ACTIVE_WEBHOOKS = Query("active_webhooks", "SELECT id FROM webhooks WHERE queue = :queue AND active = :active")

INSERT_DELIVERY = Query("insert_delivery", f"""
    INSERT INTO webhook_deliveries (event_id, webhook_id, item_id, kind, body, status, attempts, next_attempt_at,
                                    created_at, sequence)
    VALUES (:event_id, :webhook_id, :item_id, :kind, :body, '{DeliveryStatus.PENDING}', 0, :now, :now, :sequence)
""")

#: The item's next notification number (the decision holds the item's row lock).
NEXT_WEBHOOK_SEQ = Query("next_webhook_seq", """
    UPDATE items SET webhook_seq = webhook_seq + 1 WHERE id = :item_id RETURNING webhook_seq
""")

_FIRST_OF_ITS_ITEM = f"""
    NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                WHERE e.webhook_id = webhook_deliveries.webhook_id AND e.item_id = webhook_deliveries.item_id
                  AND e.status = '{DeliveryStatus.PENDING}' AND e.id < webhook_deliveries.id)
"""

#: What may be sent now: due, and the first still pending of its item for its webhook.
DUE_DELIVERIES = Query("due_deliveries", f"""
    SELECT id, webhook_id FROM webhook_deliveries
    WHERE status = '{DeliveryStatus.PENDING}' AND next_attempt_at <= :now AND {_FIRST_OF_ITS_ITEM}
    ORDER BY next_attempt_at, id LIMIT :limit
""")

#: Take one delivery for sending, re-checking everything in the same statement: still
#: pending and first of its item, nobody sending it, its webhook active, its item not
#: erased or purged.
CLAIM_DELIVERY = Query("claim_delivery", f"""
    UPDATE webhook_deliveries SET sending_until = :until, next_attempt_at = :until
    WHERE id = :id AND status = '{DeliveryStatus.PENDING}' AND next_attempt_at <= :now
      AND (sending_until IS NULL OR sending_until <= :now)
      AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_deliveries.webhook_id AND w.active)
      AND NOT EXISTS (SELECT 1 FROM items i WHERE i.id = webhook_deliveries.item_id AND i.purged_at IS NOT NULL)
      AND {_FIRST_OF_ITS_ITEM}
    RETURNING id, body, attempts, event_id, webhook_id,
              (SELECT url FROM webhooks w WHERE w.id = webhook_deliveries.webhook_id) AS url,
              (SELECT secret FROM webhooks w WHERE w.id = webhook_deliveries.webhook_id) AS secret
""")

#: A delivery whose item's content is gone, or whose webhook was removed, is not sent.
CANCEL_PURGED_DELIVERY = Query("cancel_purged_delivery", f"""
    UPDATE webhook_deliveries SET status = '{DeliveryStatus.CANCELLED}'
    WHERE id = :id AND status = '{DeliveryStatus.PENDING}'
      AND (EXISTS (SELECT 1 FROM items i WHERE i.id = webhook_deliveries.item_id AND i.purged_at IS NOT NULL)
           OR NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_deliveries.webhook_id AND w.active))
""")

#: One attempt's outcome. A delivery cancelled while in flight stays cancelled (but
#: what happened to the POST is still recorded); either way it is no longer in flight.
FINISH_DELIVERY = Query("finish_delivery", f"""
    UPDATE webhook_deliveries
    SET status = CASE WHEN status = '{DeliveryStatus.PENDING}' THEN :status ELSE status END,
        attempts = :attempts, last_error = :error,
        next_attempt_at = COALESCE(:next_at, next_attempt_at),
        delivered_at = COALESCE(:delivered_at, delivered_at), sending_until = NULL
    WHERE id = :id
""")

# --- the audit chain's order -----------------------------------------------------------
# Sealed in an order the database gives, never a host's clock (audit.py): on PostgreSQL
# events.seq, the writing transaction's id, and the bound is the oldest transaction
# still running (every smaller id has ended); on SQLite, where writers take turns, the
# row id, read under the write lock.

# ``at_raw``: the time as text the audit code parses itself, so a value no datetime can
# hold (PostgreSQL's '-infinity', SQLite's '') is reported, never a crash of the check.
_EVENT_COLUMNS = "id, seq, @at_text AS at_raw, actor, kind, item_id, queue, before, after, mac"

#: Events with a seal key in [:since, :upto), after (:after_key, :after_id), in key order.
EVENTS_BY_KEY = Query("events_by_key", {
    "postgresql": f"""
        SELECT {_EVENT_COLUMNS}, seq AS key FROM events
        WHERE seq >= :since AND seq < :upto AND (seq > :after_key OR (seq = :after_key AND id > :after_id))
        ORDER BY seq, id LIMIT :limit
    """,
    "sqlite": f"""
        SELECT {_EVENT_COLUMNS}, id AS key FROM events
        WHERE seq IS NULL AND id >= :since AND id < :upto AND id > :after_id
        ORDER BY id LIMIT :limit
    """,
}, json_columns=["before", "after"])

#: Events sealed by time before revision 0010 (seq 0), from :since_at to :until_at.
LEGACY_EVENTS = Query("legacy_events", f"""
    SELECT {_EVENT_COLUMNS}, 0 AS key FROM events
    WHERE seq = 0 AND at >= :since_at AND at < :until_at
      AND (at > :after_at OR (at = :after_at AND id > :after_id))
    ORDER BY at, id LIMIT :limit
""", json_columns=["before", "after"])

ALL_EVENTS = Query("all_events", "SELECT count(*) AS n FROM events")

#: An event whose MAC another event carries too (a copied row).
DUPLICATE_EVENT_MAC = Query("duplicate_event_mac", """
    SELECT max(id) AS id FROM events WHERE mac IS NOT NULL GROUP BY mac HAVING count(*) > 1 LIMIT 1
""")

#: The same, among the events with a seal key in [:since, :upto) (what is about to be
#: sealed): one probe of ix_events_mac per event.
DUPLICATE_IN_RANGE = Query("duplicate_in_range", {
    "postgresql": """
        SELECT e.id FROM events e WHERE e.seq >= :since AND e.seq < :upto AND e.mac IS NOT NULL
          AND EXISTS (SELECT 1 FROM events d WHERE d.mac = e.mac AND d.id <> e.id) LIMIT 1
    """,
    "sqlite": """
        SELECT e.id FROM events e WHERE e.seq IS NULL AND e.id >= :since AND e.id < :upto AND e.mac IS NOT NULL
          AND EXISTS (SELECT 1 FROM events d WHERE d.mac = e.mac AND d.id <> e.id) LIMIT 1
    """,
})

#: The seal key below which every event has committed. SQLite: under the write lock.
#: PostgreSQL: the oldest transaction still running anywhere on the server; but see
#: :func:`seal_bound`, which only waits for this database's.
SEAL_BOUND = Query("seal_bound", {
    "postgresql": """
        SELECT pg_snapshot_xmin(s)::text::bigint AS bound, pg_snapshot_xmax(s)::text::bigint AS next
        FROM pg_current_snapshot() AS s
    """,
    "sqlite": "SELECT coalesce(max(id), 0) + 1 AS bound, 0 AS next FROM events",
})

#: The transactions running in this database, with the 32-bit ids PostgreSQL shows;
#: and whether any session's id is hidden from this role.
RUNNING_HERE = Query("running_here", """
    SELECT min(backend_xid::text::bigint) FILTER (WHERE backend_xid IS NOT NULL) AS oldest,
           bool_or(query = '<insufficient privilege>') AS hidden
    FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
""")

#: Where the order of events sealed after revision 0010 starts.
SEAL_KEY_START = {"postgresql": 1, "sqlite": 0}

# --- locks --------------------------------------------------------------------------

_LOCK_KEY = Query("lock_key", {
    "sqlite": "SELECT 1",  # the write transaction already holds SQLite's one write lock
    "postgresql": "SELECT pg_advisory_xact_lock(hashtext(:key))",
})

# --- tool calls -----------------------------------------------------------------------

#: The agent applies a decision once: the first to mark it wins (toolcalls.mark_applied).
MARK_APPLIED = Query("mark_applied", """
    UPDATE items SET applied_at = :now WHERE id = :item_id AND applied_at IS NULL
""")

# --- bulk ingest --------------------------------------------------------------------

#: Rows for :func:`insert_items`; JSON columns already encoded as text.
INSERT_ITEMS = Query("insert_items", """
    INSERT INTO items (id, queue, external_id, input, output, confidence, predicted_label, model, model_version,
                       context, metadata, priority, status, route, claim_order, review_chance, confidence_band,
                       redactions, field_confidence, flagged_fields, output_schema, deadline_at, created_at, updated_at)
    VALUES (:id, :queue, :external_id, :input, :output, :confidence, :predicted_label, :model, :model_version,
            :context, :metadata, :priority, :status, :route, :claim_order, :review_chance, :confidence_band,
            :redactions, :field_confidence, :flagged_fields, :output_schema, :deadline_at, :created_at, :updated_at)
    ON CONFLICT (queue, external_id) DO NOTHING
""", encoded_json=["input", "output", "context", "metadata", "redactions", "field_confidence", "flagged_fields",
                   "output_schema"])

# fmt: on


def seal_bound(tx: Tx) -> int:
    """The seal key below which every event of this database has committed.

    PostgreSQL: a transaction's id is its events' key. The snapshot's ``xmin`` (the
    oldest transaction running anywhere on the server) is always safe, but a long one
    in another database would hold sealing back. So, the snapshot read first (every id
    below its ``xmax`` was handed out before it), then the transactions running in this
    database: the bound is the oldest of those, or ``xmax``. Their ids are shown 32 bits
    wide: the epoch comes from ``xmax``. When this role cannot see every session, the
    server-wide bound is used."""
    first = SEAL_BOUND.first(tx)
    if tx.dialect != "postgresql":
        return first.bound
    here = RUNNING_HERE.first(tx)
    if here.hidden:
        return first.bound
    if here.oldest is None:
        return first.next
    full = (first.next >> 32 << 32) | here.oldest
    if full > first.next:
        full -= 1 << 32
    return max(first.bound, min(full, first.next))


def lock_key(tx: Tx, key: str) -> None:
    """Serialise the write transactions that lock ``key``, until ``tx`` ends."""
    _LOCK_KEY.run(tx, {"key": key})


#: A new item as :func:`insert_items` takes it: every column but the two timestamps.
ItemRow = namedtuple("ItemRow", INSERT_ITEMS.params[:-2], defaults=(None, None, None, None))
assert INSERT_ITEMS.params[-2:] == ("created_at", "updated_at")
_INSERT_CHUNK = 5000


def insert_items(tx: Tx, rows: list[ItemRow], now: datetime, on_chunk=None) -> int:
    """Insert new items stamped ``now``; returns how many were stored (the others hit
    the unique ``(queue, external_id)`` index: stored before, or by a concurrent writer).
    ``on_chunk(n)`` is called after each chunk of ``n`` rows."""
    stamp = (time_param(tx.dialect, now),) * 2
    stored = 0
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        stored += INSERT_ITEMS.many(tx, [row + stamp for row in chunk])
        if on_chunk is not None:
            on_chunk(len(chunk))
    return stored
