"""The tables. Shared by storage, the API and the UI (SQLModel), changed only through
Alembic migrations (``reviewqueue/migrations``).

Design rules that later features rely on:
- a decision is a row of its own (``reviews``), never columns overwritten on the item,
  so several reviewers per item, consensus and gold items fit without a rewrite;
- every change to an item or a queue is also an append-only ``events`` row;
- nothing is deleted: an undone decision is marked ``undone_at``, a revoked token
  ``revoked_at``, a removed user ``active = False``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, FetchedValue, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from . import clock
from .vocab import Consensus, DeliveryStatus, Role

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def _json(nullable: bool = True, name: str | None = None) -> Any:
    if name:
        return Column(name, JSONType, nullable=nullable)
    return Column(JSONType, nullable=nullable)


DEFAULT_REJECT_REASONS = ["incorrect", "unsupported_by_sources", "harmful", "off_topic", "other"]


#: The rows of ``ix_items_due``.
_DUE = text(
    "deadline_at IS NOT NULL AND deadline_state <> 'passed' "
    "AND status IN ('pending', 'in_review', 'disputed')"
)


class Queue(SQLModel, table=True):
    __tablename__ = "queues"

    name: str = Field(primary_key=True, max_length=64)
    description: str = Field(default="")
    threshold: float = Field(default=0.8)
    label_thresholds: dict[str, float] = Field(default_factory=dict, sa_column=_json(False))
    audit_rate: float = Field(default=0.02)
    lease_seconds: int = Field(default=600)
    #: Decisions from distinct reviewers an item needs (1-5), and how they become one.
    reviews_required: int = Field(default=1)
    consensus: str = Field(default=Consensus.MAJORITY, max_length=16)
    #: Who may review this queue (user names); empty: every reviewer.
    reviewers: list[str] = Field(default_factory=list, sa_column=_json(False))
    #: Written by admins for reviewers, shown on the Review page (markdown).
    guidelines: str = Field(default="")
    #: Reviewers see the earlier decisions on an item (default: blind review).
    show_previous_reviews: bool = Field(default=False)
    labels: list[str] = Field(default_factory=list, sa_column=_json(False))
    reject_reasons: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REJECT_REASONS), sa_column=_json(False)
    )
    #: PII removed at ingest, before anything is stored (redaction.py): detector names
    #: and custom ``{"name", "pattern"}`` rules.
    redaction: list[Any] = Field(default_factory=list, sa_column=_json(False))
    #: Content older than this many days is purged (retention.py); none: kept.
    retention_days: int | None = Field(default=None)
    #: Seconds an item may wait for a human after it arrives (none: no deadline), what
    #: happens then (a ``DeadlineAction``), and the warning's lead time (deadlines.py).
    deadline_seconds: int | None = Field(default=None)
    on_deadline: str = Field(default="keep", max_length=16)
    #: The reject reason a ``reject`` fallback records (one of ``reject_reasons``).
    deadline_reason: str | None = Field(default=None, max_length=256)
    #: The queue an ``escalate`` fallback moves the item to.
    escalate_to: str | None = Field(default=None, max_length=64)
    warn_seconds: int | None = Field(default=None)
    #: Alert rules (notify.py): ``{"oldest_waiting_seconds": 3600, "due_soon": 10,
    #: "fallbacks_per_hour": 5, "target_error": 0.02}``; absent keys are not checked.
    alerts: dict[str, Any] = Field(default_factory=dict, sa_column=_json(False))
    #: Structured outputs (structured.py): the JSON Schema every output (and every
    #: correction) must validate against, and thresholds per field path.
    output_schema: dict[str, Any] | None = Field(default=None, sa_column=_json(True))
    field_thresholds: dict[str, float] = Field(default_factory=dict, sa_column=_json(False))
    #: ``text`` (any output) or ``tool_call``: every output is a proposed call
    #: ``{"tool": ..., "arguments": {...}}`` (toolcalls.py).
    kind: str = Field(default="text", max_length=16)
    created_at: datetime = Field(default_factory=clock.now)
    updated_at: datetime = Field(default_factory=clock.now)


class Item(SQLModel, table=True):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("queue", "external_id", name="uq_items_queue_external_id"),
        # The claim query walks this index in order: equality on (queue, status),
        # then claim_order ascending is exactly "most urgent first". The lease sweep
        # uses its (queue, 'in_review') prefix, which holds only leased rows. (A
        # separate lease index tempted PostgreSQL into sorting every pending row.)
        Index("ix_items_claim", "queue", "status", "claim_order"),
        Index("ix_items_updated", "updated_at", "id"),
        Index("ix_items_decided", "decided_at"),
        # Exports walk a queue's final decisions by when the items became final.
        Index("ix_items_queue_decided", "queue", "decided_at"),
        # The oldest waiting item and the backlog by age: seeks and range counts per
        # (queue, status), never a walk over the queue's whole history.
        Index("ix_items_waiting", "queue", "status", "created_at"),
        # The quality report's one GROUP BY reads only this index, in its order: a
        # stream over the queue's entries, no sort, no table rows (quality.py).
        # The deadline job's look at what is due (deadlines.py): only items still waiting
        # whose deadline has not passed yet are in it.
        Index(
            "ix_items_due",
            "deadline_at",
            sqlite_where=_DUE,
            postgresql_where=_DUE,
        ),
        Index(
            "ix_items_quality",
            "queue",
            "model_version",
            "route",
            "review_chance",
            "confidence_band",
            "predicted_label",
            "status",
            "confidence",
            "created_at",
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    queue: str = Field(foreign_key="queues.name", max_length=64)
    external_id: str | None = Field(default=None, max_length=256)
    input: Any = Field(default=None, sa_column=_json(True))
    output: Any = Field(default=None, sa_column=_json(True))
    confidence: float
    predicted_label: str | None = Field(default=None, max_length=256)
    model: str | None = Field(default=None, max_length=256)
    model_version: str | None = Field(default=None, max_length=256)
    context: list[dict[str, Any]] = Field(default_factory=list, sa_column=_json(False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=_json(False, name="metadata"))
    priority: int = Field(default=0)
    status: str = Field(max_length=16)
    route: str = Field(max_length=16)
    #: Text key whose ascending order is the claim order: priority descending, then
    #: confidence ascending, then id (time) ascending. One plain index serves it on
    #: both backends, where a mixed-direction index would not.
    claim_order: str = Field(max_length=64)
    lease_holder: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=clock.now)
    updated_at: datetime = Field(default_factory=clock.now)
    decided_at: datetime | None = Field(default=None)
    #: The chance this item had of being queued for review when it arrived: 1 below the
    #: threshold, the queue's audit rate then above it. Quality estimates weight each
    #: decided item by it (quality.py), so a later change of threshold or audit rate
    #: never skews them.
    review_chance: float | None = Field(default=None)
    #: The 1%-wide band of the confidence, 0-99 (0.29 is band 29), stored so the quality
    #: report groups by a column its index holds in order.
    confidence_band: int | None = Field(default=None)
    #: What redaction removed at ingest, by placeholder: ``{"EMAIL": 2}``.
    redactions: dict[str, int] | None = Field(default=None, sa_column=_json(True))
    #: When the content was removed (retention or erasure); what metrics need stays.
    purged_at: datetime | None = Field(default=None)
    #: Decisions made on it so far (not undone); below the queue's reviews_required the
    #: item waits for the next reviewer.
    reviews_done: int = Field(default=0)
    #: The decision that counts: the agreed one, or a lead's adjudication.
    final_review_id: int | None = Field(default=None)
    #: Share of the reviewers' decisions that agree with the final one (1 for one reviewer).
    agreement: float | None = Field(default=None)
    #: Notifications about this item so far: each webhook body carries the next number
    #: (``sequence``), so receivers can order them (outbox.py).
    webhook_seq: int = Field(default=0)
    #: When a human decision is due (deadlines.py); none: no deadline.
    deadline_at: datetime | None = Field(default=None)
    #: "" before the warning, "warned" after it, "passed" once the deadline was handled.
    deadline_state: str = Field(default="", max_length=16)
    #: What the deadline did, once it passed: accept, reject, escalate or keep.
    deadline_action: str | None = Field(default=None, max_length=16)
    #: The reject reason a ``reject`` fallback recorded.
    fallback_reason: str | None = Field(default=None, max_length=256)
    #: Structured outputs: the model's confidence per field path, and the paths below
    #: their threshold (what the reviewer must look at).
    field_confidence: dict[str, float] | None = Field(default=None, sa_column=_json(True))
    flagged_fields: list[str] | None = Field(default=None, sa_column=_json(True))
    #: This item's own JSON Schema, over the queue's (a tool call's arguments schema).
    output_schema: dict[str, Any] | None = Field(default=None, sa_column=_json(True))
    #: Tool calls: when the agent applied the decision (ran the tool, or did not): once.
    applied_at: datetime | None = Field(default=None)


class Review(SQLModel, table=True):
    """One reviewer's decision on one item."""

    __tablename__ = "reviews"
    __table_args__ = (
        Index("ix_reviews_item", "item_id"),
        Index("ix_reviews_queue_created", "queue", "created_at"),
        Index("ix_reviews_reviewer_created", "reviewer", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(foreign_key="items.id", max_length=36)
    queue: str = Field(max_length=64)
    reviewer: str = Field(max_length=128)
    verdict: str = Field(max_length=16)
    final_output: Any = Field(default=None, sa_column=_json(True))
    final_label: str | None = Field(default=None, max_length=256)
    reason: str | None = Field(default=None, max_length=128)
    comment: str | None = Field(default=None)
    seconds_spent: float | None = Field(default=None)
    #: Word-level edit distance from the model's output to ``final_output`` (0 for an
    #: approval, none for a rejection), fixed when the decision is made.
    edit_distance: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=clock.now)
    #: Set when the reviewer undid this decision; the row stays for the audit trail.
    undone_at: datetime | None = Field(default=None)
    #: A lead's (or admin's) decision settling a disagreement, not a reviewer's vote.
    adjudication: bool = Field(default=False)
    #: Made after the item's deadline fallback had already decided it (deadlines.py):
    #: evaluation data, but the app acted on the fallback.
    after_deadline: bool = Field(default=False)
    #: A correction of a structured output: the field paths it changed.
    changed_fields: list[str] | None = Field(default=None, sa_column=_json(True))


class Event(SQLModel, table=True):
    """Append-only audit log: who changed what, when, from what to what."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_item", "item_id", "id"),
        Index("ix_events_at", "at"),
        Index("ix_events_seq", "seq", "id"),
        Index("ix_events_mac", "mac"),
        # Counting one kind of event over time (deadline fallbacks for metrics and alerts).
        Index("ix_events_kind_at", "kind", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The order the audit chain seals events in, set by the database: the writing
    #: transaction's id on PostgreSQL (a column default), none on SQLite (the row id is
    #: that order there); 0 for events sealed by time before revision 0010 (audit.py).
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True, server_default=FetchedValue())
    )
    at: datetime = Field(default_factory=clock.now)
    actor: str = Field(max_length=128)
    kind: str = Field(max_length=64)
    item_id: str | None = Field(default=None, max_length=36)
    queue: str | None = Field(default=None, max_length=64)
    before: Any = Field(default=None, sa_column=_json(True))
    after: Any = Field(default=None, sa_column=_json(True))
    #: ``nonce:HMAC`` of the fields with the server key, written with the event
    #: (events.py); none only on events sealed before revision 0010.
    mac: str | None = Field(default=None, max_length=96)


class User(SQLModel, table=True):
    __tablename__ = "users"

    name: str = Field(primary_key=True, max_length=128)
    role: str = Field(default=Role.REVIEWER, max_length=16)
    email: str | None = Field(default=None, max_length=256, unique=True)
    password_hash: str | None = Field(default=None, max_length=256)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=clock.now)


class ApiToken(SQLModel, table=True):
    """An API token. Only a SHA-256 hash is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    scope: str = Field(max_length=16)
    #: Queues the token may touch; empty means all.
    queues: list[str] = Field(default_factory=list, sa_column=_json(False))
    #: The user a review-scope token acts as.
    user: str | None = Field(default=None, foreign_key="users.name", max_length=128)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=clock.now)
    revoked_at: datetime | None = Field(default=None)
    #: After this moment the token no longer authenticates (none: it does not expire).
    expires_at: datetime | None = Field(default=None)
    last_used_at: datetime | None = Field(default=None)


class Webhook(SQLModel, table=True):
    """Where a queue's decisions are POSTed, signed with ``secret``."""

    __tablename__ = "webhooks"

    id: int | None = Field(default=None, primary_key=True)
    queue: str = Field(foreign_key="queues.name", max_length=64, index=True)
    url: str = Field(max_length=2048)
    #: The signing secret, encrypted with the server key (keys.py).
    secret: str = Field(max_length=512)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=clock.now)


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one row per (event, webhook), written in the decision's transaction."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36, index=True)
    webhook_id: int = Field(foreign_key="webhooks.id")
    #: The item the notification is about (for erasure and retention).
    item_id: str | None = Field(default=None, max_length=36, index=True)
    kind: str = Field(max_length=64)
    #: The exact body sent, so the signature and every retry cover the same bytes.
    body: str
    #: a DeliveryStatus
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=clock.now)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=clock.now)
    delivered_at: datetime | None = Field(default=None)
    #: The item's notification number this body carries (``items.webhook_seq``).
    sequence: int | None = Field(default=None)
    #: While a worker is POSTing it: until when (webhooks.py waits for it on removal).
    sending_until: datetime | None = Field(default=None)


class ExportRun(SQLModel, table=True):
    """An export. Incremental runs belong to a feed and continue from the newest
    ``until`` of the same feed and queue: the watermark lives here, in the database."""

    __tablename__ = "export_runs"
    __table_args__ = (Index("ix_export_runs_feed", "feed", "queue", "until"),)

    id: int | None = Field(default=None, primary_key=True)
    queue: str = Field(max_length=64)
    format: str = Field(max_length=16)
    #: Comma-separated verdict filter ("" for all).
    verdicts: str = Field(default="", max_length=64)
    #: incremental, week or range
    mode: str = Field(max_length=16)
    #: The feed an incremental run belongs to (none for week and range runs).
    feed: str | None = Field(default=None, max_length=1024)
    since: datetime
    until: datetime
    rows: int
    path: str = Field(max_length=1024)
    #: While set, the file is still at this partial path, waiting to be renamed into place.
    pending_path: str | None = Field(default=None, max_length=1024)
    #: Until when the exporting process may still be moving it there; after that any
    #: process of any host finishes or forgets the run (export/run.py: recover).
    pending_until: datetime | None = Field(default=None)
    #: The host that wrote the file (its folder may be local to it).
    host: str | None = Field(default=None, max_length=255)
    sha256: str = Field(max_length=64)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=clock.now)


class Policy(SQLModel, table=True):
    """A decision admins make at run time (``policies.py``)."""

    __tablename__ = "policies"

    name: str = Field(primary_key=True, max_length=64)
    value: Any = Field(default=None, sa_column=_json(True))
    updated_by: str = Field(max_length=128)
    updated_at: datetime = Field(default_factory=clock.now)


class SignInAttempt(SQLModel, table=True):
    """One sign-in attempt: what the back-off counts, in every process (``users.py``)."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_name", "name", "at"),
        Index("ix_sign_in_client", "client", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=clock.now)
    name: str = Field(max_length=128)
    client: str | None = Field(default=None, max_length=64)
    ok: bool
    #: Refused unchecked (the client was throttled): counts as its failure.
    limited: bool = Field(default=False)


class AuditSeal(SQLModel, table=True):
    """A block of the audit log sealed into a keyed hash chain (audit.py): the events
    whose ``seq`` order falls before ``upto`` (and at or after the previous seal's),
    ``events`` of them, chained into ``chain``. Seals are numbered without gaps; ``mac``
    binds a seal's own fields with the server key. Seals made before revision 0010
    (``upto`` none) cover the events with ``at`` before ``until_at``."""

    __tablename__ = "audit_seals"
    __table_args__ = (Index("ix_audit_seals_number", "number", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    number: int | None = Field(default=None)
    upto: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    until_at: datetime
    events: int
    chain: str = Field(max_length=64)
    first_at: datetime | None = Field(default=None)
    last_at: datetime | None = Field(default=None)
    mac: str | None = Field(default=None, max_length=64)
    sealed_at: datetime = Field(default_factory=clock.now)
    #: The fingerprint of the server key it was made with (cluster.fingerprint): after a
    #: key rotation, older seals verify with a retired key (rotation.py). None: made
    #: before revision 0014, with the key the database knew then.
    key_fingerprint: str | None = Field(default=None, max_length=32)


class UiSession(SQLModel, table=True):
    """A signed-in review-app session (sessions.py): only a SHA-256 of its cookie's token."""

    __tablename__ = "ui_sessions"
    __table_args__ = (Index("ix_ui_sessions_user", "user", "ended_at"),)

    id_hash: str = Field(primary_key=True, max_length=64)
    user: str = Field(foreign_key="users.name", max_length=128)
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = Field(default=None)
    client: str = Field(default="", max_length=64)


class ClusterFact(SQLModel, table=True):
    """What every node of a deployment must agree on, kept in the shared database
    (cluster.py): the server key's fingerprint."""

    __tablename__ = "cluster"

    name: str = Field(primary_key=True, max_length=64)
    value: str
    updated_at: datetime = Field(default_factory=clock.now)


class JobLease(SQLModel, table=True):
    """Which process leads a background job, until when (jobs.py)."""

    __tablename__ = "job_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str | None = Field(default=None, max_length=256)
    expires_at: datetime
    acquired_at: datetime | None = Field(default=None)


class NotifyChannel(SQLModel, table=True):
    """Where alerts go (notify.py): a Slack-compatible incoming webhook, or an e-mail address."""

    __tablename__ = "notify_channels"

    id: int | None = Field(default=None, primary_key=True)
    #: slack (Slack, Mattermost, Teams and alike: ``{"text": ...}`` POSTed) or email
    kind: str = Field(max_length=16)
    #: The webhook URL (a secret: encrypted with the server key) or the address.
    target: str = Field(max_length=2048)
    #: Queues whose alerts it gets; empty: every queue.
    queues: list[str] = Field(default_factory=list, sa_column=_json(False))
    #: It also gets the daily digest.
    digest: bool = Field(default=True)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=clock.now)
    last_error: str | None = Field(default=None, max_length=1000)


class AlertState(SQLModel, table=True):
    """Whether one alert rule of one queue is firing, and when it last sent a message
    (notify.py); the row ``("", "digest")`` remembers the last daily digest."""

    __tablename__ = "alert_states"

    queue: str = Field(primary_key=True, max_length=64)
    rule: str = Field(primary_key=True, max_length=32)
    active: bool = Field(default=False)
    #: The figure when last evaluated, and the threshold it was held against.
    value: float | None = Field(default=None)
    threshold: float | None = Field(default=None)
    raised_at: datetime | None = Field(default=None)
    cleared_at: datetime | None = Field(default=None)
    last_sent_at: datetime | None = Field(default=None)
