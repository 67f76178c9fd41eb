"""Importing model outputs from a JSON Lines file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import PayloadTooLarge, QueueNotFound, ReviewQueueError, ValidationFailed
from ._lazy import lazy
from .base import (
    _actor,
    _engine,
    app,
)

ingest, queues, store = lazy("ingest", "queues", "store")


@app.command("ingest")
def ingest_file(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one item per line ('-' for stdin).")],
    queue: Annotated[str | None, typer.Option(help="Queue for lines that name none.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1_000_000,
            help="Import in atomic batches of this many lines instead of all at "
            "once (resumable: every line needs an external_id, and a re-run skips what is stored).",
        ),
    ] = None,
) -> None:
    """Import model outputs from a JSONL file; prints where they were routed.

    The whole file is checked first (every field, the queues it names, sizes): if any
    line is bad, nothing is imported and every bad line is listed by its line number.
    Then all of it is stored in one transaction, or nothing is. With --batch-size the
    import is batched instead: each batch is atomic, and a re-run of the same command
    stores what an interrupted run did not.
    """
    from pydantic import ValidationError

    from ..schemas import ItemIn

    stream = sys.stdin if str(file) == "-" else None
    if stream is None and not file.exists():
        raise ValidationFailed(f"no such file: {file}")
    if stream is None and file.is_dir():
        raise ValidationFailed(f"{file} is a folder; give a JSON Lines file (one item per line)")
    engine = _engine()
    known = set(queues.names(engine=engine))
    if queue and queue not in known:
        raise QueueNotFound(queue)
    lines, items, errors = [], [], []
    with stream or file.open(encoding="utf-8") as fh:
        try:
            numbered = list(enumerate(fh, 1))
        except UnicodeDecodeError as exc:
            raise ValidationFailed(
                f"{file} is not UTF-8 text (byte {exc.start} cannot be read): give a JSON Lines file, one "
                "JSON object per line"
            ) from None
        for lineno, line in numbered:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append((lineno, f"line {lineno}: not valid JSON ({exc.msg})"))
                continue
            if not isinstance(record, dict):
                errors.append((lineno, f"line {lineno}: expected a JSON object"))
                continue
            if queue and "queue" not in record:
                record["queue"] = queue
            try:
                items.append(ItemIn.model_validate(record))
                lines.append(lineno)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    errors.append((lineno, f"line {lineno}: {'.'.join(map(str, err['loc']))}: {err['msg']}"))
    if not items and not errors:
        raise ValidationFailed(f"{file} holds no items: give one JSON object per line")
    for lineno, it in zip(lines, items, strict=True):
        if it.queue not in known:
            errors.append((lineno, f"line {lineno}: queue {it.queue!r} does not exist"))
        elif batch_size and it.external_id is None:
            errors.append((lineno, f"line {lineno}: a batched import needs an external_id on every line"))
    _fail_if_bad_lines(errors)

    totals: dict[str, int] = {}
    duplicates = 0
    size = batch_size or len(items)
    if batch_size:
        typer.echo(
            f"importing in atomic batches of {batch_size}: if this stops, run it again to store the rest",
            err=True,
        )
    with typer.progressbar(length=len(items), label="importing", file=sys.stderr) as bar:
        for start in range(0, len(items), size):
            try:
                results = ingest.submit_many(
                    items[start : start + size], actor=_actor(), engine=engine, on_progress=bar.update
                )
            except (ValidationFailed, PayloadTooLarge) as exc:
                _fail_if_bad_lines(_by_line(exc, lines[start:]), imported=start)
                raise
            for result in results:
                if result.duplicate:
                    duplicates += 1
                else:
                    totals[result.route] = totals.get(result.route, 0) + 1
    new = sum(totals.values())
    routed = ", ".join(f"{n} {route}" for route, n in sorted(totals.items())) or "nothing new"
    typer.echo(f"imported {new} item(s): {routed}; {duplicates} already present")


def _by_line(exc: ReviewQueueError, lines: list[int]) -> list[tuple[int, str]]:
    """A batch error's ``["items", index, ...]`` locations as file lines."""
    out = []
    for err in getattr(exc, "errors", None) or (exc.detail if isinstance(exc.detail, list) else []):
        loc = list(err.get("loc", []))
        if len(loc) >= 2 and loc[0] == "items" and isinstance(loc[1], int) and loc[1] < len(lines):
            where = ".".join(map(str, loc[2:]))
            out.append((lines[loc[1]], f"line {lines[loc[1]]}: {where + ': ' if where else ''}{err['msg']}"))
    return out


def _fail_if_bad_lines(errors: list[tuple[int, str]], imported: int = 0) -> None:
    if not errors:
        return
    messages = [msg for _, msg in sorted(errors, key=lambda e: e[0])]
    for msg in messages[:50]:
        typer.echo(msg, err=True)
    more = f" (first 50 shown of {len(messages)})" if len(messages) > 50 else ""
    done = f"the {imported} line(s) before this batch were imported; " if imported else "nothing imported: "
    raise ValidationFailed(f"{done}{len(messages)} bad line(s){more}")
