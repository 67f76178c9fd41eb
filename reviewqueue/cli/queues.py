"""Queues and their settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ValidationFailed
from ..vocab import DECIDED, Consensus, DeadlineAction, QueueKind, Status
from ._lazy import lazy
from .base import (
    _actor,
    _echo_table,
    _engine,
    queue_app,
)

ingest, queues, users = lazy("ingest", "queues", "users")


def _queue_settings(options: dict) -> dict:
    """The queue options given on the command line, as settings."""
    plain = (
        "description",
        "threshold",
        "audit_rate",
        "lease_seconds",
        "retention_days",
        "reviews_required",
        "consensus",
        "show_previous_reviews",
        "deadline_seconds",
        "on_deadline",
        "deadline_reason",
        "escalate_to",
        "warn_seconds",
        "kind",
    )
    settings: dict = {k: options[k] for k in plain if options[k] is not None}
    if options["any_reviewer"]:
        if options["reviewer"]:
            raise ValidationFailed("give --reviewer NAME or --any-reviewer, not both")
        settings["reviewers"] = []
    elif options["reviewer"]:
        settings["reviewers"] = options["reviewer"]
    if options["guidelines_file"] is not None:
        if options["guidelines"] is not None:
            raise ValidationFailed("give --guidelines TEXT or --guidelines-file PATH, not both")
        try:
            settings["guidelines"] = options["guidelines_file"].read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationFailed(f"cannot read {options['guidelines_file']}: {exc.strerror}") from None
    elif options["guidelines"] is not None:
        settings["guidelines"] = options["guidelines"]
    if options["label"]:
        settings["labels"] = options["label"]
    if options["reject_reason"]:
        settings["reject_reasons"] = options["reject_reason"]
    if options["label_threshold"]:
        settings["label_thresholds"] = {
            name: _number(value, "--label-threshold", spec)
            for name, value, spec in _pairs(options["label_threshold"])
        }
    if options["redact"] is not None or options["redact_pattern"]:
        settings["redaction"] = [
            *(options["redact"] or []),
            *({"name": n, "pattern": v} for n, v, _ in _pairs(options["redact_pattern"] or [])),
        ]
    if options.get("output_schema_file") is not None:
        try:
            settings["output_schema"] = json.loads(options["output_schema_file"].read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValidationFailed(f"cannot read {options['output_schema_file']}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValidationFailed(f"{options['output_schema_file']} is not JSON: {exc}") from None
    if options.get("field_threshold"):
        settings["field_thresholds"] = {
            name: _number(value, "--field-threshold", spec)
            for name, value, spec in _pairs(options["field_threshold"])
        }
    alerts = {_ALERT_KEYS[k]: options[k] for k in _ALERTS if options.get(k) is not None}
    if alerts:
        settings["alerts"] = alerts
    return settings


#: Alert rule options (notify.py), by the name the queue's ``alerts`` setting uses.
_ALERT_KEYS = {
    "alert_oldest_seconds": "oldest_waiting_seconds",
    "alert_due_soon": "due_soon",
    "alert_fallbacks_per_hour": "fallbacks_per_hour",
    "alert_target_error": "target_error",
}
_ALERTS = tuple(_ALERT_KEYS)


def _pairs(specs: list[str]):
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise ValidationFailed(f"give NAME=VALUE, e.g. billing=0.9 (got {spec!r})")
        yield name, value, spec


def _number(value: str, flag: str, spec: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValidationFailed(f"{flag} takes NAME=VALUE, e.g. billing=0.9 (got {spec!r})") from None


Description = Annotated[str | None, typer.Option(help="What the queue is for; guidelines for its reviewers.")]
Threshold = Annotated[float | None, typer.Option(help="Confidence below this goes to review (default 0.8).")]
AuditRate = Annotated[
    float | None, typer.Option(help="Fraction of above-threshold outputs still reviewed (default 0.02).")
]
LeaseSeconds = Annotated[
    int | None, typer.Option(help="How long a claimed item stays with its reviewer (default 600).")
]
Labels = Annotated[
    list[str] | None, typer.Option("--label", help="A label for classification queues; repeat.")
]
LabelThresholds = Annotated[
    list[str] | None, typer.Option("--label-threshold", help="LABEL=VALUE threshold; repeat.")
]
RejectReasons = Annotated[
    list[str] | None, typer.Option("--reject-reason", help="A reject reason code; repeat.")
]
Redact = Annotated[
    list[str] | None,
    typer.Option("--redact", help="Remove this PII at ingest: email, phone, card, iban, ip, ssn; repeat."),
]
RedactPattern = Annotated[
    list[str] | None,
    typer.Option("--redact-pattern", help="NAME=REGEX: matches become [NAME] at ingest; repeat."),
]
RetentionDays = Annotated[
    int | None, typer.Option("--retention-days", help="Purge content after this many days (0: keep).")
]
ReviewsRequired = Annotated[
    int | None,
    typer.Option("--reviews-required", help="Decisions from distinct reviewers each item needs (1-5)."),
]
ConsensusRule = Annotated[
    Consensus | None,
    typer.Option("--consensus", help="How several decisions become final: majority or unanimous."),
]
Reviewers = Annotated[
    list[str] | None,
    typer.Option("--reviewer", help="Only these users review the queue; repeat (default: every reviewer)."),
]
AnyReviewer = Annotated[
    bool, typer.Option("--any-reviewer", help="Let every reviewer review the queue again.")
]
Guidelines = Annotated[
    str | None, typer.Option("--guidelines", help="Guidelines shown on the Review page (markdown).")
]
GuidelinesFile = Annotated[
    Path | None, typer.Option("--guidelines-file", help="Read the guidelines from this file.")
]
DeadlineSeconds = Annotated[
    int | None,
    typer.Option(
        "--deadline-seconds", help="Seconds an item may wait for a human after it arrives (0: none)."
    ),
]
OnDeadline = Annotated[
    DeadlineAction | None,
    typer.Option("--on-deadline", help="At the deadline: keep (default), accept, reject or escalate."),
]
DeadlineReason = Annotated[
    str | None, typer.Option("--deadline-reason", help="The reject reason of --on-deadline reject.")
]
EscalateTo = Annotated[
    str | None, typer.Option("--escalate-to", help="The queue --on-deadline escalate moves items to.")
]
WarnSeconds = Annotated[
    int | None,
    typer.Option("--warn-seconds", help="Send item.deadline_near this many seconds before (0: none)."),
]
AlertOldest = Annotated[
    int | None,
    typer.Option("--alert-oldest-seconds", help="Alert when the oldest waiting item is older than this."),
]
AlertDueSoon = Annotated[
    int | None,
    typer.Option("--alert-due-soon", help="Alert when this many items are due within --warn-seconds."),
]
AlertFallbacks = Annotated[
    int | None,
    typer.Option("--alert-fallbacks-per-hour", help="Alert at this many deadline fallbacks in an hour."),
]
AlertTargetError = Annotated[
    float | None,
    typer.Option(
        "--alert-target-error",
        help="Alert when the upper bound of the auto-accepted error is above this share (0.02 = 2%).",
    ),
]
OutputSchemaFile = Annotated[
    Path | None,
    typer.Option(
        "--output-schema-file", help="Structured outputs: a JSON Schema file outputs must validate against."
    ),
]
Kind = Annotated[
    QueueKind | None,
    typer.Option("--kind", help="text (default: any output) or tool_call (proposed agent tool calls)."),
]
FieldThresholds = Annotated[
    list[str] | None, typer.Option("--field-threshold", help="PATH=VALUE threshold of one field; repeat.")
]
ShowPrevious = Annotated[
    bool | None,
    typer.Option(
        "--show-previous-reviews/--blind",
        help="Show reviewers the decisions already made on an item (default: blind).",
    ),
]


@queue_app.command("create")
def queue_create(
    name: str,
    description: Description = None,
    threshold: Threshold = None,
    audit_rate: AuditRate = None,
    lease_seconds: LeaseSeconds = None,
    label: Labels = None,
    label_threshold: LabelThresholds = None,
    reject_reason: RejectReasons = None,
    redact: Redact = None,
    redact_pattern: RedactPattern = None,
    retention_days: RetentionDays = None,
    reviews_required: ReviewsRequired = None,
    consensus: ConsensusRule = None,
    reviewer: Reviewers = None,
    any_reviewer: AnyReviewer = False,
    guidelines: Guidelines = None,
    guidelines_file: GuidelinesFile = None,
    show_previous_reviews: ShowPrevious = None,
    deadline_seconds: DeadlineSeconds = None,
    on_deadline: OnDeadline = None,
    deadline_reason: DeadlineReason = None,
    escalate_to: EscalateTo = None,
    warn_seconds: WarnSeconds = None,
    alert_oldest_seconds: AlertOldest = None,
    alert_due_soon: AlertDueSoon = None,
    alert_fallbacks_per_hour: AlertFallbacks = None,
    alert_target_error: AlertTargetError = None,
    output_schema_file: OutputSchemaFile = None,
    field_threshold: FieldThresholds = None,
    kind: Kind = None,
) -> None:
    """Create queue NAME."""
    options = dict(locals())
    _engine()
    q = queues.create(name, _queue_settings(options), actor=_actor())
    typer.echo(f"created queue {q.name}: {_summary(q)}")


@queue_app.command("update")
def queue_update(
    name: str,
    description: Description = None,
    threshold: Threshold = None,
    audit_rate: AuditRate = None,
    lease_seconds: LeaseSeconds = None,
    label: Labels = None,
    label_threshold: LabelThresholds = None,
    reject_reason: RejectReasons = None,
    redact: Redact = None,
    redact_pattern: RedactPattern = None,
    retention_days: RetentionDays = None,
    reviews_required: ReviewsRequired = None,
    consensus: ConsensusRule = None,
    reviewer: Reviewers = None,
    any_reviewer: AnyReviewer = False,
    guidelines: Guidelines = None,
    guidelines_file: GuidelinesFile = None,
    show_previous_reviews: ShowPrevious = None,
    deadline_seconds: DeadlineSeconds = None,
    on_deadline: OnDeadline = None,
    deadline_reason: DeadlineReason = None,
    escalate_to: EscalateTo = None,
    warn_seconds: WarnSeconds = None,
    alert_oldest_seconds: AlertOldest = None,
    alert_due_soon: AlertDueSoon = None,
    alert_fallbacks_per_hour: AlertFallbacks = None,
    alert_target_error: AlertTargetError = None,
    output_schema_file: OutputSchemaFile = None,
    field_threshold: FieldThresholds = None,
    kind: Kind = None,
) -> None:
    """Change settings of queue NAME (only the options given)."""
    options = dict(locals())
    _engine()
    q = queues.update(name, _queue_settings(options), actor=_actor())
    typer.echo(f"updated queue {q.name}: {_summary(q)}")


def _summary(q) -> str:
    text = f"threshold {q.threshold}, audit rate {q.audit_rate}, lease {q.lease_seconds}s"
    if q.reviews_required > 1:
        text += f", {q.reviews_required} reviews per item ({q.consensus})"
    if q.reviewers:
        text += f", reviewers {', '.join(q.reviewers)}"
    if q.deadline_seconds:
        text += f", deadline {q.deadline_seconds}s then {q.on_deadline}"
        if q.on_deadline == DeadlineAction.REJECT:
            text += f" ({q.deadline_reason})"
        elif q.on_deadline == DeadlineAction.ESCALATE:
            text += f" to {q.escalate_to}"
    if q.warn_seconds:
        text += f", warning {q.warn_seconds}s before"
    if q.alerts:
        text += ", alerts " + ", ".join(f"{k}={v}" for k, v in q.alerts.items())
    return text


@queue_app.command("list")
def queue_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List queues with their settings and counts by status."""
    _engine(read_only=True)
    rows = queues.overview()
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no queues yet (create one: reviewqueue queue create NAME)")
        return
    _echo_table(
        [
            [
                q.name,
                q.threshold,
                q.audit_rate,
                q.counts.get(Status.PENDING, 0),
                q.counts.get(Status.IN_REVIEW, 0),
                q.counts.get(Status.DISPUTED, 0),
                sum(q.counts.get(s, 0) for s in DECIDED),
                q.counts.get(Status.AUTO_ACCEPTED, 0),
                q.counts.get(Status.TIMED_OUT, 0),
            ]
            for q in rows
        ],
        [
            "queue",
            "threshold",
            "audit",
            "pending",
            "in_review",
            "disputed",
            "decided",
            "auto_accepted",
            "timed_out",
        ],
    )
