"""Correction datasets: export runs and their list."""

from __future__ import annotations

from pathlib import Path
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

clock, queues = lazy("clock", "queues")


@app.command("export")
def export_cmd(
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default REVIEWQUEUE_EXPORT_DIR).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="jsonl, csv, parquet, chat-jsonl, fields-jsonl or tool-calls-jsonl"),
    ] = "jsonl",
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="Queue to export; repeat (default all).")
    ] = None,
    week: Annotated[str | None, typer.Option("--week", help="ISO week in UTC, e.g. 2026-W47.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 start (inclusive).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 end (exclusive).")] = None,
    verdict: Annotated[
        list[str] | None, typer.Option("--verdict", help="Only these verdicts; repeat.")
    ] = None,
    feed: Annotated[
        str | None,
        typer.Option(
            "--feed",
            help="The incremental feed to continue (default: one per --out folder, format and "
            "verdicts). Week and range exports belong to no feed.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes converting slices in parallel (default REVIEWQUEUE_EXPORT_WORKERS: cores, up to 2).",
        ),
    ] = None,
) -> None:
    """Write decided items as a dataset: a --week or a --since/--until range, or with
    neither, everything since the last run of the feed (OUT/<format>/<queue>/weeks|feeds|ranges/...)."""
    from .. import export as exports

    _engine()
    try:
        since_dt = clock.parse(since) if since else None
        until_dt = clock.parse(until) if until else None
    except ValueError as exc:
        raise ValidationFailed(
            f"--since/--until take ISO 8601 times, e.g. 2026-11-16T00:00:00Z ({exc})"
        ) from None
    for r in exports.export(
        out,
        fmt=fmt,
        queues=queue,
        week_spec=week,
        feed=feed,
        since=since_dt,
        until=until_dt,
        verdicts=verdict,
        actor=_actor(),
        workers=workers,
    ):
        counts = ", ".join(f"{n} {v}" for v, n in sorted(r.counts_by_verdict.items())) or "no decisions"
        typer.echo(f"{r.queue}: {r.rows} row(s) ({counts}) -> {r.path}")


@app.command("exports")
def exports_list(limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20) -> None:
    """List past exports (a feed's watermark is the newest 'until' of its runs)."""
    from .. import export as exports

    _engine(read_only=True)
    _echo_table(
        [
            [
                r.id,
                r.queue,
                r.format,
                r.mode,
                r.feed or "",
                clock.iso(r.since),
                clock.iso(r.until),
                r.rows,
                r.path,
            ]
            for r in exports.runs(limit=limit)
        ],
        ["id", "queue", "format", "mode", "feed", "since", "until", "rows", "file"],
    )
