"""How good the model and the reviewers are: quality and agreement."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import ValidationFailed
from ._lazy import lazy
from .base import (
    _actor,
    _echo_table,
    _engine,
    app,
)

(clock,) = lazy("clock")


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _interval(e) -> str:
    if e.estimate is None:
        return f"not enough evidence: {e.reason}"
    return f"{_pct(e.estimate)} ({_pct(e.low)} to {_pct(e.high)})"


@app.command("agreement")
def agreement_cmd(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    since: Annotated[str | None, typer.Option("--since", help="Decisions made from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Decisions made before (ISO 8601).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
) -> None:
    """How much reviewers agree (percent agreement, Krippendorff's alpha) and each
    reviewer's figures: decisions, speed, agreement with the final decision, progress."""
    from .. import agreement

    _engine(read_only=True)
    since_dt, until_dt = _window(since, until)
    rep = agreement.report(queue, since=since_dt, until=until_dt)
    if as_json:
        typer.echo(rep.model_dump_json(indent=2))
        return
    level = f"{rep.confidence_level:.0%}"
    typer.echo(
        f"Queue {rep.queue}: {rep.reviews_required} review(s) per item, compared on {rep.compared_on}; "
        f"{rep.units:,} items with several decisions ({rep.decisions:,} decisions)"
    )

    def figure(i, fmt):
        if i.estimate is None:
            return "- (no item has two decisions yet)"
        return f"{fmt(i.estimate)} ({level} interval {fmt(i.low)} to {fmt(i.high)})"

    typer.echo(f"Percent agreement: {figure(rep.percent_agreement, _pct)}")
    typer.echo(f"Krippendorff's alpha: {figure(rep.alpha, lambda v: f'{v:.3f}')}")
    typer.echo(f"Disputes waiting for a lead: {rep.disputes_open}; settled by a lead: {rep.adjudicated}")
    if rep.reviewers:
        typer.echo("")
        _echo_table(
            [
                [
                    r.reviewer,
                    r.decisions,
                    "-" if r.median_seconds is None else f"{r.median_seconds:.0f}",
                    _pct(r.agreement_with_final) if r.compared else "-",
                    r.overturned,
                    r.today,
                    r.this_week,
                ]
                for r in rep.reviewers
            ],
            ["reviewer", "decisions", "median s", "agrees with final", "overturned", "today", "this week"],
        )


def _window(since: str | None, until: str | None):
    try:
        return (clock.parse(since) if since else None, clock.parse(until) if until else None)
    except ValueError as exc:
        raise ValidationFailed(
            f"--since/--until take ISO 8601 times, e.g. 2026-11-16T00:00:00Z ({exc})"
        ) from None


@app.command("quality")
def quality_cmd(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    target_error: Annotated[
        float | None,
        typer.Option("--target-error", help="Error the unreviewed traffic may have, e.g. 0.02 for 2%."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Items that arrived from (ISO 8601).")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Items that arrived before (ISO 8601).")
    ] = None,
    model_version: Annotated[str | None, typer.Option("--model-version")] = None,
    predicted_label: Annotated[str | None, typer.Option("--predicted-label")] = None,
    confidence_level: Annotated[float, typer.Option("--confidence-level")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
    fields: Annotated[
        bool, typer.Option("--fields", help="Structured outputs: the report per field path instead.")
    ] = False,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Set the queue's threshold to the recommendation (needs --target-error)."
        ),
    ] = False,
) -> None:
    """How wrong the unreviewed traffic is, whether confidence means anything, and which
    threshold meets a target error (docs/quality.md)."""
    from .. import quality

    _engine(read_only=True)
    if fields:
        _fields(queue, target_error, confidence_level, as_json)
        return
    since_dt, until_dt = _window(since, until)
    if apply and target_error is None:
        raise ValidationFailed(
            "--apply needs --target-error: the recommendation is the threshold that meets it"
        )
    rep = quality.report(
        queue,
        since=since_dt,
        until=until_dt,
        model_version=model_version,
        predicted_label=predicted_label,
        target_error=target_error,
        confidence_level=confidence_level,
    )
    if as_json:
        typer.echo(rep.model_dump_json(indent=2))
        return
    level = f"{rep.confidence_level:.0%}"
    routes = ", ".join(f"{n:,} {r}" for r, n in sorted(rep.by_route.items())) or "none"
    typer.echo(f"Queue {rep.queue}: {rep.items:,} items ({routes}); {rep.decided:,} decided")
    typer.echo(
        f"  threshold {rep.threshold:g}, audit rate {rep.audit_rate:g}; {rep.items_per_day:,.0f} items a day"
    )
    typer.echo(f"Error of the outputs that went out unreviewed ({level} interval):")
    typer.echo(f"  {_interval(rep.auto_accepted_error)}  [{rep.auto_accepted_error.audited:,} audited]")
    typer.echo(f"Accuracy of all traffic: {_interval(rep.accuracy)}")
    typer.echo("")
    typer.echo(f"Calibration (observed accuracy by confidence; ECE {_pct(rep.ece)}):")
    _echo_table(
        [
            [
                f"{b.confidence_low:.1f}-{b.confidence_high:.1f}",
                f"{b.items:,}",
                f"{b.decided:,}",
                "-" if b.mean_confidence is None else f"{b.mean_confidence:.2f}",
                "-" if b.accuracy is None else f"{_pct(b.accuracy)} ({_pct(b.low)}-{_pct(b.high)})",
            ]
            for b in rep.reliability
            if b.items
        ],
        ["confidence", "items", "decided", "mean conf.", "accuracy"],
    )
    typer.echo("")
    typer.echo("Thresholds (review load against the error that would go out unreviewed):")
    _echo_table(
        [
            [
                f"{r.threshold:.2f}",
                _pct(r.review_rate, 0),
                _pct(r.expected_error),
                _pct(r.error_upper),
                "-" if r.review_items_per_day is None else f"{r.review_items_per_day:,.0f}",
                "-" if r.reviewer_hours_per_day is None else f"{r.reviewer_hours_per_day:,.1f}",
            ]
            for r in rep.thresholds
            if round(r.threshold * 100) % 5 == 0 or r is rep.recommendation
        ],
        ["threshold", "reviewed", "error", f"upper ({level})", "items/day", "reviewer-hours/day"],
    )
    if rep.target_error is not None:
        typer.echo("")
        r = rep.recommendation
        if r is not None:
            hours = (
                f", ~{r.reviewer_hours_per_day:,.1f} reviewer-hours"
                if r.reviewer_hours_per_day is not None
                else ""
            )
            typer.echo(
                f"Recommended threshold for at most {_pct(rep.target_error)} error: {r.threshold:.2f} "
                f"(error {_pct(r.expected_error)}, at most {_pct(r.error_upper)}); you review "
                f"{_pct(r.review_rate, 0)} of traffic: ~{r.review_items_per_day:,.0f} items a day{hours}"
            )
        else:
            typer.echo(f"No recommended threshold: {rep.recommendation_reason}")
        for advice in rep.label_thresholds:
            got = advice.recommendation
            typer.echo(
                f"  label {advice.label}: "
                + (
                    f"{got.threshold:.2f} (now {advice.current_threshold:g})"
                    if got
                    else f"none ({advice.reason})"
                )
            )
    if rep.by_model_version:
        typer.echo("")
        typer.echo("By model version:")
        _echo_table(
            [
                [
                    v.model_version or "(none)",
                    f"{v.items:,}",
                    f"{v.decided:,}",
                    _interval(v.error),
                    "DRIFT: worse than the version before" if v.drift else "",
                ]
                for v in rep.by_model_version
            ],
            ["version", "items", "decided", "error", ""],
        )
    if rep.reject_reasons["total"]:
        typer.echo(
            "Reject reasons: " + ", ".join(f"{k} {n:,}" for k, n in rep.reject_reasons["total"].items())
        )
    for note in rep.notes:
        typer.echo(f"Note: {note}")
    if apply:
        q = quality.apply_recommendation(
            queue, target_error, actor=_actor(), confidence_level=confidence_level
        )
        typer.echo(f"Applied: {queue} threshold is now {q.threshold:g}")


def _fields(queue: str, target_error, confidence_level: float, as_json: bool) -> None:
    from .. import field_quality

    rows = field_quality.report(queue, target_error=target_error, confidence_level=confidence_level)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not rows:
        typer.echo(f"no decided structured items in {queue} yet (items with field_confidence)")
        return
    level = f"{confidence_level:.0%}"
    _echo_table(
        [
            [
                r.path,
                f"{r.threshold:g}",
                f"{r.reviewed:,}",
                _interval(r.accuracy),
                _interval(r.auto_accepted_error),
                "-" if r.recommendation is None else f"{r.recommendation:.2f}",
            ]
            for r in rows
        ],
        ["field", "threshold", "reviewed", f"accuracy ({level})", "error when confident", "advice"],
    )
