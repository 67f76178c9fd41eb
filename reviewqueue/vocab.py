"""The words reviewqueue is built from, defined once.

Statuses, routes, verdicts, roles, token scopes and event kinds are ``StrEnum``s: they
compare equal to their text (``Status.PENDING == "pending"``), are stored and sent as
that text, and every module (models, schemas, API, CLI, UI, client) names them from here.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where an item is. ``pending`` → ``in_review`` → a decided status, or
    ``auto_accepted`` from the start; ``disputed`` when several reviewers disagree;
    ``erased`` when its content was erased before anyone finished with it (it left the
    queue)."""

    PENDING = "pending"
    IN_REVIEW = "in_review"
    DISPUTED = "disputed"
    APPROVED = "approved"
    CORRECTED = "corrected"
    REJECTED = "rejected"
    AUTO_ACCEPTED = "auto_accepted"
    #: Nobody decided before the deadline: the queue's fallback did (deadlines.py).
    TIMED_OUT = "timed_out"
    ERASED = "erased"

    @property
    def decided(self) -> bool:
        return self in DECIDED

    @property
    def waiting(self) -> bool:
        return self in WAITING


#: Statuses of an item a human has finished with.
DECIDED = frozenset({Status.APPROVED, Status.CORRECTED, Status.REJECTED})
#: Statuses of an item still waiting for a human (counted in the backlog).
WAITING = frozenset({Status.PENDING, Status.IN_REVIEW, Status.DISPUTED})
#: Statuses of an item whose answer the app can act on now.
FINAL = DECIDED | {Status.AUTO_ACCEPTED, Status.TIMED_OUT}


class QueueKind(StrEnum):
    """What a queue's outputs are."""

    TEXT = "text"  # any output: text or JSON
    TOOL_CALL = "tool_call"  # a proposed tool call {"tool", "arguments"} (toolcalls.py)


class DeadlineAction(StrEnum):
    """What a queue does with an item nobody decided by its deadline (deadlines.py)."""

    KEEP = "keep"  # nothing: the item is just late
    ACCEPT = "accept"  # the model's output stands
    REJECT = "reject"  # rejected with the queue's deadline_reason
    ESCALATE = "escalate"  # moved to the queue escalate_to, with its history

    @property
    def verdict(self) -> Verdict | None:
        return {DeadlineAction.ACCEPT: Verdict.APPROVE, DeadlineAction.REJECT: Verdict.REJECT}.get(self)


class Source(StrEnum):
    """Who gave the answer an app gets for an item."""

    REVIEWER = "reviewer"  # a person (or several, agreed)
    DEADLINE = "deadline"  # the queue's fallback, at the deadline
    TIMEOUT = "timeout"  # the client's own fallback: it stopped waiting first (client.py)
    THRESHOLD = "threshold"  # auto-accepted: confident enough that nobody was asked


class Route(StrEnum):
    """Why an item is where it is."""

    BELOW_THRESHOLD = "below_threshold"
    LABEL_THRESHOLD = "label_threshold"
    #: A structured output with a field below its threshold (structured.py).
    FIELD_THRESHOLD = "field_threshold"
    AUDIT_SAMPLE = "audit_sample"
    AUTO_ACCEPTED = "auto_accepted"

    @property
    def reviewed(self) -> bool:
        return self is not Route.AUTO_ACCEPTED


class Verdict(StrEnum):
    APPROVE = "approve"
    CORRECT = "correct"
    REJECT = "reject"

    @property
    def status(self) -> Status:
        """The item status a final decision with this verdict leads to."""
        return _VERDICT_STATUS[self]

    @classmethod
    def of_status(cls, status: str) -> Verdict | None:
        return _STATUS_VERDICT.get(status)


_VERDICT_STATUS = {
    Verdict.APPROVE: Status.APPROVED,
    Verdict.CORRECT: Status.CORRECTED,
    Verdict.REJECT: Status.REJECTED,
}
_STATUS_VERDICT = {s: v for v, s in _VERDICT_STATUS.items()}


class Role(StrEnum):
    """What a signed-in person may do: reviewers review, leads also settle disputes,
    admins also change settings, users and tokens."""

    REVIEWER = "reviewer"
    LEAD = "lead"
    ADMIN = "admin"

    def at_least(self, other: Role) -> bool:
        return _RANK[self] >= _RANK[Role(other)]


_RANK = {Role.REVIEWER: 0, Role.LEAD: 1, Role.ADMIN: 2}


class Scope(StrEnum):
    """What an API token may do."""

    INGEST = "ingest"
    READ = "read"
    REVIEW = "review"
    ADMIN = "admin"


class Consensus(StrEnum):
    """How several reviewers' decisions become one final decision."""

    MAJORITY = "majority"
    UNANIMOUS = "unanimous"


class DeliveryStatus(StrEnum):
    """A webhook delivery in the outbox."""

    PENDING = "pending"  # waiting, or being retried
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after about a day
    CANCELLED = "cancelled"  # its webhook was removed before it was sent


class EventKind(StrEnum):
    """Every kind of change the audit log records."""

    ITEMS_INGESTED = "items.ingested"
    ITEM_CLAIMED = "item.claimed"
    ITEM_RELEASED = "item.released"
    ITEM_LEASE_EXPIRED = "item.lease_expired"
    ITEM_REVIEWED = "item.reviewed"
    ITEM_DISPUTED = "item.disputed"
    ITEM_ADJUDICATED = "item.adjudicated"
    ITEM_DECIDED = "item.decided"
    ITEM_DECISION_UNDONE = "item.decision_undone"
    ITEM_DEADLINE_NEAR = "item.deadline_near"
    ITEM_DEADLINE_PASSED = "item.deadline_passed"
    ITEM_REVIEWED_AFTER_DEADLINE = "item.reviewed_after_deadline"
    ITEM_ERASED = "item.erased"
    ITEMS_PURGED = "items.purged"
    QUEUE_CREATED = "queue.created"
    QUEUE_UPDATED = "queue.updated"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_SIGNED_IN = "user.signed_in"
    USER_SIGN_IN_FAILED = "user.sign_in_failed"
    USER_SIGNED_OUT = "user.signed_out"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    WEBHOOK_ADDED = "webhook.added"
    WEBHOOK_REMOVED = "webhook.removed"
    EXPORT_WRITTEN = "export.written"
    POLICY_UPDATED = "policy.updated"
    ALERT_RAISED = "alert.raised"
    ALERT_CLEARED = "alert.cleared"
    ALERT_SENT = "alert.sent"
    NOTIFY_ADDED = "notify.added"
    NOTIFY_REMOVED = "notify.removed"
    KEY_ROTATED = "key.rotated"
