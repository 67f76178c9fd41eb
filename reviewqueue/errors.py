"""Every error reviewqueue raises on purpose, in one hierarchy.

Callers catch :class:`ReviewQueueError`; the HTTP API maps each class to a status
code in one place (``api/errors.py``), the CLI prints ``str(error)``, the UI shows it
with ``st.error``. Messages describe the problem in the domain's words; each shell adds
its own hint of what to do (a CLI flag, an API field, a button), since only it knows
how its user would do it. Invalid fields are named in ``ValidationFailed.errors``
(``loc``), which the shells map to their own names.
"""

from __future__ import annotations

from typing import Any


class ReviewQueueError(Exception):
    """Base class. ``detail`` is what the API returns as ``{"detail": ...}``."""

    status_code = 400

    def __init__(self, message: str, *, detail: Any = None):
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


class ValidationFailed(ReviewQueueError):
    """Input broke a rule. ``errors`` lists ``{"loc": [...], "msg": ...}`` for every bad field."""

    status_code = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        self.errors = errors or []
        super().__init__(message, detail=self.errors or message)

    @classmethod
    def of(cls, errors: list[dict[str, Any]]) -> ValidationFailed:
        """One error for many bad fields, with a message that names the first few."""
        return cls(_summarise(errors), errors)

    @classmethod
    def from_pydantic(cls, exc, *, prefix: tuple = ()) -> ValidationFailed:
        return cls.of(
            [
                {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
                for err in exc.errors(include_url=False, include_input=False)
            ]
        )


def _summarise(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid input: " + "; ".join(parts) + more


class PayloadTooLarge(ReviewQueueError):
    status_code = 413


def invalid(field: str, message: str) -> ValidationFailed:
    """One bad field: ``message`` says what is wrong with it."""
    return ValidationFailed(message, [{"loc": [field], "msg": message, "type": "value_error"}])


class NotFound(ReviewQueueError):
    status_code = 404


class QueueNotFound(NotFound):
    def __init__(self, name: str, message: str | None = None):
        super().__init__(message or f"queue {name!r} does not exist")
        self.name = name


class ItemNotFound(NotFound):
    def __init__(self, item_id: str):
        super().__init__(f"item {item_id!r} does not exist")


class Conflict(ReviewQueueError):
    """The action is valid in general but not in the item's current state."""

    status_code = 409


class DeadlinePassed(Conflict):
    """The item's deadline passed and the queue's fallback decided it (deadlines.py)."""

    def __init__(self, item_id: str, action: str | None):
        self.action = action
        super().__init__(
            f"item {item_id} passed its deadline and the queue's fallback decided it ({action}); nothing to do"
        )


class LeaseLost(Conflict):
    """The caller does not (or no longer) hold the lease on the item."""


class AlreadyExists(Conflict):
    pass


class Unavailable(ReviewQueueError):
    """The service cannot answer now but will soon: the API answers 503 with
    ``Retry-After: retry_after`` (seconds)."""

    status_code = 503
    retry_after = 1


class DatabaseBusy(Unavailable):
    """The database's write lock stayed taken past the busy timeout; nothing was written."""


class PoolExhausted(Unavailable):
    """No database connection came free within ``REVIEWQUEUE_DB_POOL_TIMEOUT``."""

    retry_after = 2


class DatabaseUnreachable(Unavailable):
    """The database refused or did not answer a new connection (down, or at its
    ``max_connections``)."""

    retry_after = 5


class BadSetting(ReviewQueueError):
    """A setting (an environment variable) cannot be used as it is; the message says
    which and what it takes."""

    status_code = 500


class KeyMismatch(ReviewQueueError):
    """This process's server key is not the one the shared database was set up with."""

    status_code = 500


class AuthenticationFailed(ReviewQueueError):
    status_code = 401


class PermissionDenied(ReviewQueueError):
    status_code = 403


class NotAssigned(PermissionDenied):
    def __init__(self, queue: str, reviewer: str):
        super().__init__(
            f"{reviewer} is not one of the reviewers of queue {queue!r}; an admin can add them "
            f"(reviewqueue queue update {queue} --reviewer {reviewer})"
        )
        self.queue, self.reviewer = queue, reviewer


class RateLimited(ReviewQueueError):
    status_code = 429
