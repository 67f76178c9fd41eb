"""Queues and their settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ValidationFailed
from ..vocab import DECIDED, Consensus, Status
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
    return settings


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
        raise ValidationFailed(f"{flag} takes LABEL=VALUE, e.g. billing=0.9 (got {spec!r})") from None


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
            ]
            for q in rows
        ],
        ["queue", "threshold", "audit", "pending", "in_review", "disputed", "decided", "auto_accepted"],
    )
