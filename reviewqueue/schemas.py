"""Wire models: what goes in and out of reviewqueue, validated at the edge.

The same classes serve the Python API (``reviewqueue.ingest``), the HTTP API (FastAPI
builds its OpenAPI schema from them) and the Python client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .vocab import Consensus, DeadlineAction, QueueKind, Route, Source, Status, Verdict

QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

QueueName = Annotated[str, StringConstraints(pattern=QUEUE_NAME_PATTERN)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_NUL = re.compile(r"(?:^|[^\\])(?:\\\\)*\\u0000")


def has_nul(encoded_json: str) -> bool:
    """Whether JSON text encodes a NUL character (an unescaped ``\\u0000``)."""
    return "u0000" in encoded_json and _NUL.search(encoded_json) is not None


def unstorable(text: str, *, encoded_json: bool = False) -> str | None:
    """Why ``text`` (plain, or JSON encoded with ``ensure_ascii=False``) cannot be stored,
    or ``None``. Neither database stores a NUL character in text or JSON, nor a lone
    UTF-16 surrogate (``\\ud800``: not a character, so not UTF-8), and the same input
    must behave the same on both backends."""
    if has_nul(text) if encoded_json else "\x00" in text:
        return "NUL characters (\\u0000) cannot be stored"
    if not text.isascii():  # the common case costs one C scan
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "lone surrogates (\\ud800-\\udfff) are not characters and cannot be stored"
    return None


def _storable(text: str) -> str:
    problem = unstorable(text)
    if problem:
        raise ValueError(problem)
    return text


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("not a moment that can be expressed in UTC") from None


def _iso_only(value: Any) -> Any:
    # pydantic would take 1700000000 (or "1700000000") as seconds since 1970; the API
    # says ISO 8601, and a bare number is more likely a mistake than a time.
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\s*-?[\d.]+\s*", value)):
        raise ValueError("give an ISO 8601 time, e.g. 2026-11-01T00:00:00Z (not a number)")
    return value


#: A moment, as an aware UTC datetime (naive ones are taken as UTC), written in ISO 8601.
Moment = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_utc)]


def _whole(value: Any) -> Any:
    # JSON Schema's "integer" takes -1.0 (a number with no fraction), so the API does;
    # a fraction, a string or a boolean is refused.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole)]

#: Text a person or an app supplied, checked to be storable as it is.
Text = Annotated[str, AfterValidator(_storable)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_storable)]


def _storable_json(value: Any) -> Any:
    if value is not None:
        problem = unstorable(json.dumps(value, ensure_ascii=False), encoded_json=True)
        if problem:
            raise ValueError(problem)
    return value


#: A model input or output: plain text, or any JSON object or array.
Payload = str | dict[str, Any] | list[Any]


#: What a source's stored content may be, and how each kind of file begins. (No SVG: an
#: image that can carry a script.)
SOURCE_MEDIA = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "application/pdf": (b"%PDF-",),
}
#: The largest stored source, decoded (the item as a whole stays under its own limit).
MAX_SOURCE_BYTES = 768 * 1024


class ContextSource(BaseModel):
    """A retrieved source behind a grounded (RAG) answer, or the document an extraction
    read: its text, where it came from (``url``, shown, never fetched), and optionally
    the file itself as stored content (``media_type`` and base64 ``data``): a scan or a
    PDF the reviewer sees beside the output."""

    model_config = ConfigDict(extra="allow")

    title: Text | None = None
    text: Text = ""
    url: Text | None = None
    media_type: str | None = Field(
        default=None,
        description="image/png, image/jpeg, image/gif, image/webp or application/pdf (with data)",
    )
    data: str | None = Field(default=None, description="The file, base64-encoded, at most 768 KiB decoded")

    @model_validator(mode="after")
    def _stored_file(self):
        if self.data is None:
            if self.media_type is not None:
                raise ValueError("media_type describes data: give the file as base64 data too")
            return self
        if self.media_type not in SOURCE_MEDIA:
            raise ValueError(f"media_type must be one of {', '.join(SOURCE_MEDIA)} when data is given")
        import base64
        import binascii

        if len(self.data) > MAX_SOURCE_BYTES * 4 // 3 + 4:
            raise ValueError(f"data is over {MAX_SOURCE_BYTES // 1024} KiB decoded")
        try:
            raw = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("data is not base64") from None
        if not raw.startswith(SOURCE_MEDIA[self.media_type]) or (
            self.media_type == "image/webp" and raw[8:12] != b"WEBP"
        ):
            raise ValueError(f"data is not a {self.media_type} file")
        return self


#: The longest deadline an item or a queue may set: a year.
MAX_DEADLINE_SECONDS = 366 * 86400


class AlertRules(BaseModel):
    """When the queue's alerts fire (notify.py); a rule left out is not checked."""

    model_config = ConfigDict(extra="forbid")

    oldest_waiting_seconds: WholeNumber | None = Field(
        default=None, ge=1, description="The oldest waiting item is older than this."
    )
    due_soon: WholeNumber | None = Field(
        default=None, ge=1, description="At least this many items are due within warn_seconds."
    )
    fallbacks_per_hour: WholeNumber | None = Field(
        default=None, ge=1, description="At least this many deadline fallbacks in the last hour."
    )
    target_error: Probability | None = Field(
        default=None,
        description="The quality advisor's upper bound of the auto-accepted error is above this share.",
    )


class ItemIn(BaseModel):
    """One model output submitted for routing (and maybe review)."""

    model_config = ConfigDict(extra="forbid")

    queue: QueueName
    input: Payload
    output: Payload
    confidence: Probability = Field(
        description="The model's confidence, a finite number in [0, 1]. May be left out when "
        "field_confidence is given: it is then the lowest field confidence."
    )
    external_id: ShortText | None = Field(
        default=None, description="Your idempotency key: the same (queue, external_id) is stored once."
    )
    model: ShortText | None = None
    model_version: ShortText | None = None
    predicted_label: ShortText | None = None
    context: list[ContextSource] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: WholeNumber = Field(default=0, ge=-1000, le=1000, description="Higher is reviewed first.")
    deadline: Moment | None = Field(
        default=None,
        description="When a human answer is due (ISO 8601 with a time zone), overriding the queue's "
        "deadline_seconds. At the deadline the queue's on_deadline fallback applies.",
    )
    deadline_seconds: WholeNumber | None = Field(
        default=None, ge=1, le=MAX_DEADLINE_SECONDS, description="The same, as seconds from arrival."
    )

    field_confidence: (
        dict[Annotated[str, StringConstraints(min_length=1, max_length=512)], Probability] | None
    ) = Field(
        default=None,
        max_length=1000,
        description="Structured outputs: confidence per field path of the output (total, "
        "line_items[0].amount); fields below their threshold send the item to review.",
    )

    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema for this item's output, checked with the queue's (a tool call's "
        "arguments: POST /v1/tool-calls builds it from the tool's schema). Corrections must validate too.",
    )

    @field_validator("output_schema")
    @classmethod
    def _item_schema(cls, value):
        from .structured import check_schema

        if value:
            check_schema(_storable_json(value))
        return value or None

    @model_validator(mode="after")
    def _one_deadline(self):
        if self.deadline is not None and self.deadline_seconds is not None:
            raise ValueError("give deadline or deadline_seconds, not both")
        return self

    @model_validator(mode="before")
    @classmethod
    def _confidence_of_fields(cls, data: Any) -> Any:
        # A structured output may leave its confidence out: the lowest field confidence.
        # (Only when every field confidence is a plain number: anything else is refused
        # by the field's own validation, and confidence stays missing.)
        if (
            isinstance(data, dict)
            and data.get("confidence") is None
            and isinstance(data.get("field_confidence"), dict)
        ):
            values = list(data["field_confidence"].values())
            if values and all(type(v) in (int, float) and 0 <= v <= 1 for v in values):
                data = {**data, "confidence": float(min(values))}
        return data


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Where a submitted output went. A plain dataclass, not a pydantic model: bulk
    ingest makes one per item, and this costs a tenth as much to build."""

    id: str
    queue: str
    status: Status
    route: Route
    duplicate: bool = False

    def as_dict(self) -> dict:
        # dataclasses.asdict deep-copies field by field: 5.7 ms for a 1,000-item batch.
        return {
            "id": self.id,
            "queue": self.queue,
            "status": self.status,
            "route": self.route,
            "duplicate": self.duplicate,
        }


class RedactionRule(BaseModel):
    """A custom redaction rule: matches of ``pattern`` become ``[NAME]``."""

    model_config = ConfigDict(extra="forbid")

    name: ShortText
    pattern: Text = Field(max_length=1000)


class QueueSettings(BaseModel):
    """A queue's settings; every field optional so the same model updates a queue."""

    model_config = ConfigDict(extra="forbid")

    description: Text | None = Field(default=None, max_length=20_000)
    threshold: Probability | None = Field(
        default=None, description="Outputs with confidence below this go to review (default 0.8)."
    )
    label_thresholds: dict[ShortText, Probability] | None = Field(
        default=None, description="Per predicted label, overriding threshold."
    )
    audit_rate: Probability | None = Field(
        default=None, description="Fraction of above-threshold outputs still reviewed (default 0.02)."
    )
    lease_seconds: int | None = Field(default=None, ge=10, le=86400)
    reviews_required: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="Decisions from distinct reviewers each item needs (1-5, default 1).",
    )
    consensus: Consensus | None = Field(
        default=None,
        description="How several decisions become the final one: majority (default) or unanimous.",
    )
    reviewers: list[ShortText] | None = Field(
        default=None,
        max_length=1000,
        description="User names who may review this queue (empty: every reviewer).",
    )
    guidelines: Text | None = Field(
        default=None,
        max_length=50_000,
        description="Guidelines for reviewers (markdown), shown on the Review page.",
    )
    show_previous_reviews: bool | None = Field(
        default=None, description="Reviewers see earlier decisions on an item (default false: blind review)."
    )
    labels: list[ShortText] | None = Field(default=None, max_length=1000)
    reject_reasons: list[ShortText] | None = Field(default=None, min_length=1, max_length=100)
    redaction: list[ShortText | RedactionRule] | None = Field(
        default=None,
        max_length=50,
        description="PII removed at ingest: detectors (email, phone, card, iban, ip, ssn) and custom "
        "{name, pattern} rules.",
    )
    retention_days: int | None = Field(
        default=None, ge=0, le=36_500, description="Days after which content is purged (0: kept for good)."
    )
    deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DEADLINE_SECONDS,
        description="Seconds an item may wait for a human after it arrives (0: no deadline). Applies to "
        "items that arrive after it is set.",
    )
    on_deadline: DeadlineAction | None = Field(
        default=None,
        description="At the deadline: keep (default: the item is just late), accept (the model's output "
        "stands), reject (with deadline_reason) or escalate (to the queue escalate_to).",
    )
    deadline_reason: ShortText | None = Field(
        default=None, description="The reject reason of a reject fallback: one of reject_reasons."
    )
    escalate_to: QueueName | None = Field(
        default=None, description="The queue an escalate fallback moves to."
    )
    warn_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DEADLINE_SECONDS,
        description="Seconds before the deadline that an item.deadline_near notification goes out (0: none).",
    )
    alerts: AlertRules | None = Field(default=None, description="When the queue's alerts fire (notify).")
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="Structured outputs: a JSON Schema (draft 2020-12) every output and every correction "
        "must validate against ({} clears it).",
    )
    kind: QueueKind | None = Field(
        default=None,
        description="text (default: any output) or tool_call (every output is a proposed tool call "
        '{"tool": ..., "arguments": {...}}; POST /v1/tool-calls).',
    )
    field_thresholds: (
        dict[Annotated[str, StringConstraints(min_length=1, max_length=512)], Probability] | None
    ) = Field(default=None, max_length=1000, description="Thresholds per field path (default: threshold).")

    @field_validator("output_schema")
    @classmethod
    def _schema(cls, value):
        from .structured import check_schema

        if value:
            check_schema(_storable_json(value))
        return value

    @field_validator("field_thresholds")
    @classmethod
    def _paths(cls, value):
        from .structured import parse_path

        for path in value or {}:
            parse_path(path)
        if value:
            _storable_json(value)  # a NUL in a path: a 422, not PostgreSQL's refusal
        return value

    @field_validator("redaction")
    @classmethod
    def _rules(cls, value):
        from .redaction import check_rules

        if value is not None:
            check_rules([r.model_dump() if isinstance(r, RedactionRule) else r for r in value])
        return value

    @field_validator("labels", "reject_reasons")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("entries must be unique")
        return value


class QueueOut(BaseModel):
    name: str
    description: str
    threshold: float
    label_thresholds: dict[str, float]
    audit_rate: float
    lease_seconds: int
    reviews_required: int
    labels: list[str]
    reject_reasons: list[str]
    redaction: list[Any] = Field(default_factory=list)
    retention_days: int | None = None
    consensus: Consensus = Consensus.MAJORITY
    reviewers: list[str] = Field(default_factory=list)
    guidelines: str = ""
    show_previous_reviews: bool = False
    deadline_seconds: int | None = None
    on_deadline: DeadlineAction = DeadlineAction.KEEP
    deadline_reason: str | None = None
    escalate_to: str | None = None
    warn_seconds: int | None = None
    alerts: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    field_thresholds: dict[str, float] = Field(default_factory=dict)
    kind: QueueKind = QueueKind.TEXT
    counts: dict[str, int] = Field(default_factory=dict)
    oldest_pending_at: datetime | None = None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    final_output: Payload | None = Field(
        default=None, description="Required for 'correct' unless final_label changes."
    )

    @field_validator("final_output")
    @classmethod
    def _final_output_storable(cls, value):
        return _storable_json(value)

    final_label: ShortText | None = None
    reason: ShortText | None = Field(
        default=None, description="Required for 'reject': one of the queue's reject_reasons."
    )
    comment: Text | None = Field(default=None, max_length=10_000)
    seconds_spent: float | None = Field(default=None, ge=0, le=86400 * 7, allow_inf_nan=False)


class AdjudicationIn(BaseModel):
    """A lead's final decision on a disputed item: ``pick`` one reviewer's decision (its
    review id, taken as it is), or give a decision of your own."""

    model_config = ConfigDict(extra="forbid")

    pick: int | None = Field(default=None, description="The id of the review to take as final.")
    decision: DecisionIn | None = Field(default=None, description="Your own decision instead.")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.pick is None) == (self.decision is None):
            raise ValueError("give either 'pick' (a review id) or 'decision', not both")
        return self


class DecisionOut(BaseModel):
    verdict: Verdict
    final_output: Any = None
    final_label: str | None = None
    reason: str | None = None
    comment: str | None = None
    reviewer: str
    decided_at: datetime
    #: Who gave this answer: reviewer(s), or the queue's deadline fallback (reviewer "system").
    source: Source = Source.REVIEWER
    #: A reviewer's decision made after the deadline fallback had decided the item.
    after_deadline: bool = False


class ReviewOut(BaseModel):
    """One stored decision (a row of ``reviews``)."""

    id: int
    item_id: str
    queue: str
    reviewer: str
    verdict: Verdict
    final_output: Any = None
    final_label: str | None = None
    reason: str | None = None
    comment: str | None = None
    seconds_spent: float | None = None
    edit_distance: int | None = None
    created_at: datetime
    undone_at: datetime | None = None
    #: A lead's decision settling a disagreement.
    adjudication: bool = False
    #: Made after the item's deadline fallback had decided it.
    after_deadline: bool = False
    #: A correction of a structured output: the field paths it changed.
    changed_fields: list[str] | None = None


class ItemOut(BaseModel):
    id: str
    queue: str
    external_id: str | None
    input: Any
    output: Any
    confidence: float
    predicted_label: str | None
    model: str | None
    model_version: str | None
    context: list[dict[str, Any]]
    metadata: dict[str, Any]
    priority: int
    status: Status
    route: Route
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    decision: DecisionOut | None = None
    #: What redaction removed at ingest, by placeholder ({"EMAIL": 2}).
    redactions: dict[str, int] | None = None
    #: When the content was removed by retention or erasure.
    purged_at: datetime | None = None
    #: Decisions so far (not undone), of the queue's reviews_required.
    reviews_done: int = 0
    #: Share of the reviewers' decisions agreeing with the final one.
    agreement: float | None = None
    #: Every decision on the item (GET /v1/items/{id}; not in lists).
    reviews: list[ReviewOut] | None = None
    #: When a human answer is due, and what the deadline did once it passed.
    deadline_at: datetime | None = None
    deadline_action: DeadlineAction | None = None
    #: On a timed-out item: a reviewer's decision made after the fallback (the app acted
    #: on ``decision``; this is what a person says it should have been).
    late_decision: DecisionOut | None = None
    #: Structured outputs: confidence per field path, and the fields below their threshold.
    field_confidence: dict[str, float] | None = None
    flagged_fields: list[str] | None = None
    #: The item's own schema (a tool call's: its arguments).
    output_schema: dict[str, Any] | None = None
