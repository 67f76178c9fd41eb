"""The ``reviewqueue`` command: a thin typer layer over the domain modules.

Every command prints what it did; errors from the domain become one line on stderr
and exit status 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from . import __version__, clock, demo, ingest, queues, store, tokens, users, webhooks
from .errors import PayloadTooLarge, QueueNotFound, ReviewQueueError, ValidationFailed
from .settings import get_settings
from .vocab import DECIDED, Consensus, Role, Scope, Status

app = typer.Typer(
    help="reviewqueue: the human-review queue for AI outputs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
queue_app = typer.Typer(help="Create, list and change queues.", no_args_is_help=True)
user_app = typer.Typer(help="Manage reviewer and admin accounts.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks that receive decisions.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(webhooks_app, name="webhooks")


def _actor() -> str:
    """Who is acting from the command line: the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _engine():
    from . import cluster

    engine = store.get_engine()
    store.upgrade(engine)
    cluster.check_key(engine=engine)  # another host's key: refuse, saying what to set
    return engine


def _echo_table(rows: list[list], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))
    typer.echo(line)
    typer.echo("  ".join("-" * w for w in widths))
    for row in rows:
        typer.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False)))


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


@app.command()
def init() -> None:
    """Create the database (or bring its schema up to date)."""
    engine = _engine()
    typer.echo(
        f"database ready at {engine.url.render_as_string(hide_password=True)} (schema {store.current_revision(engine)})"
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    engine = store.get_engine()
    store.upgrade(engine, revision)
    typer.echo(f"schema at {store.current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    typer.echo(store.current_revision(store.get_engine()) or "empty (run: reviewqueue db upgrade)")


# --- queues -------------------------------------------------------------------------


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
    _engine()
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


# --- ingest -------------------------------------------------------------------------


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

    from .schemas import ItemIn

    engine = _engine()
    stream = sys.stdin if str(file) == "-" else None
    if stream is None and not file.exists():
        raise ValidationFailed(f"no such file: {file}")
    lines, items, errors = [], [], []
    with stream or file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
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
    known = set(queues.names(engine=engine))
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


# --- users --------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[Role, typer.Option(help="What the account may do.")] = Role.REVIEWER,
    email: Annotated[str | None, typer.Option(help="E-mail, for single sign-on.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an account (asks for the password unless --password-stdin)."""
    _engine()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    users.add(name, role=role, password=password, email=email, actor=_actor())
    typer.echo(f"created {role} {name}")


@user_app.command("list")
def user_list() -> None:
    """List accounts."""
    _engine()
    _echo_table(
        [[u.name, u.role, u.email or "", "yes" if u.active else "no"] for u in users.all_users()],
        ["name", "role", "email", "active"],
    )


@user_app.command("deactivate")
def user_deactivate(name: str) -> None:
    """Stop an account at once: sign-in, open sessions and its tokens (its history stays)."""
    _engine()
    users.update(name, active=False, actor=_actor())
    typer.echo(f"deactivated {name}")


@user_app.command("activate")
def user_activate(name: str) -> None:
    """Let a deactivated account sign in again."""
    _engine()
    users.update(name, active=True, actor=_actor())
    typer.echo(f"activated {name}")


@user_app.command("role")
def user_role(name: str, role: Annotated[Role, typer.Argument(help="The new role.")]) -> None:
    """Change what an account may do; takes effect on its next request."""
    _engine()
    users.update(name, role=role, actor=_actor())
    typer.echo(f"{name} is now {role}")


@user_app.command("passwd")
def user_passwd(
    name: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a new password for an account (asks for it unless --password-stdin)."""
    _engine()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    users.update(name, password=password, actor=_actor())
    typer.echo(f"password of {name} changed")


# --- tokens and webhooks ------------------------------------------------------------


def _duration(spec: str | None):
    """``90d``, ``12h``, ``30m``: a timedelta."""
    from datetime import timedelta

    if spec is None:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    try:
        value = float(spec[:-1])
        if spec[-1] not in units or value <= 0:
            raise ValueError(spec)
    except ValueError:
        raise ValidationFailed(
            f"--expires-in takes a number and d, h or m, e.g. 90d (got {spec!r})"
        ) from None
    return timedelta(**{units[spec[-1]]: value})


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name to list and revoke it by.")],
    scope: Annotated[Scope, typer.Option("--scope", help="What the token may do.")],
    queue: Annotated[list[str] | None, typer.Option("--queue", help="Limit to this queue; repeat.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="The user a review token acts as.")] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Stop working after this long: 90d, 12h, 30m.")
    ] = None,
) -> None:
    """Create an API token. The token is printed once, alone on the last line."""
    _engine()
    record, plaintext = tokens.create(
        name, scope, queues=queue or [], user=user, expires_in=_duration(expires_in), actor=_actor()
    )
    limits = ", ".join(record.queues) or "all queues"
    until = f", until {clock.iso(record.expires_at)}" if record.expires_at else ""
    typer.echo(
        f"created {scope} token {name!r} for {limits}{until}; store it now, it is not shown again:", err=True
    )
    typer.echo(plaintext)


def _token_state(t) -> str:
    if t.revoked_at:
        return "revoked"
    if t.expires_at and t.expires_at <= clock.now():
        return "expired"
    return "active"


@token_app.command("list")
def token_list() -> None:
    """List tokens (never the tokens themselves), with their expiry."""
    _engine()
    _echo_table(
        [
            [
                t.name,
                t.scope,
                ",".join(t.queues) or "*",
                t.user or "",
                t.prefix + "...",
                _token_state(t),
                clock.iso(t.expires_at) or "never",
                clock.iso(t.last_used_at) or "",
            ]
            for t in tokens.all_tokens()
        ],
        ["name", "scope", "queues", "user", "token", "state", "expires", "last used"],
    )


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke a token by name; it stops working at once."""
    _engine()
    tokens.revoke(name, actor=_actor())
    typer.echo(f"revoked {name}")


@webhooks_app.command("add")
def webhooks_add(
    queue: str,
    url: str,
    secret: Annotated[str | None, typer.Option(help="Signing secret (default: generated).")] = None,
) -> None:
    """POST QUEUE's decisions to URL, signed. Prints the signing secret."""
    _engine()
    hook, secret = webhooks.add(queue, url, secret=secret, actor=_actor())
    typer.echo(f"webhook {hook.id} for {queue} -> {url}")
    typer.echo(f"signing secret (shown once, stored encrypted): {secret}")


@webhooks_app.command("list")
def webhooks_list() -> None:
    """List webhooks."""
    _engine()
    _echo_table(
        [[h.id, h.queue, h.url, "yes" if h.active else "no"] for h in webhooks.all_webhooks()],
        ["id", "queue", "url", "active"],
    )


@webhooks_app.command("remove")
def webhooks_remove(webhook_id: int) -> None:
    """Stop sending to a webhook; what it had not received yet is cancelled (and stays listed)."""
    _engine()
    webhooks.remove(webhook_id, actor=_actor())
    typer.echo(f"webhook {webhook_id} removed; its pending deliveries were cancelled")


@webhooks_app.command("status")
def webhooks_status() -> None:
    """Deliveries per webhook: pending, delivered, failed, and the last error."""
    _engine()
    rows = webhooks.status()
    if not rows:
        typer.echo("no webhooks (add one: reviewqueue webhooks add QUEUE URL)")
        return
    _echo_table(
        [
            [r["id"], r["queue"], r["url"], r["pending"], r["delivered"], r["failed"], r["last_error"] or ""]
            for r in rows
        ],
        ["id", "queue", "url", "pending", "delivered", "failed", "last error"],
    )


@webhooks_app.command("worker")
def webhooks_worker() -> None:
    """Deliver webhooks in the foreground (reviewqueue api and up run this for you)."""
    engine = _engine()
    worker = webhooks.Worker(engine).start()
    typer.echo("delivering webhooks; Ctrl-C to stop")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    worker.stop()


# --- exports ------------------------------------------------------------------------


@app.command("export")
def export_cmd(
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default REVIEWQUEUE_EXPORT_DIR).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv, parquet or chat-jsonl")] = "jsonl",
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
    neither, everything since the last run of the feed (OUT/<format>/<queue>/<period>/)."""
    from . import export as exports

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
    from . import export as exports

    _engine()
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


# --- quality ------------------------------------------------------------------------


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
    from . import agreement

    _engine()
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
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Set the queue's threshold to the recommendation (needs --target-error)."
        ),
    ] = False,
) -> None:
    """How wrong the unreviewed traffic is, whether confidence means anything, and which
    threshold meets a target error (docs/quality.md)."""
    from . import quality

    _engine()
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


# --- governance ---------------------------------------------------------------------

audit_app = typer.Typer(help="The audit log: read it, seal it, verify it.", invoke_without_command=True)
app.add_typer(audit_app, name="audit")


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 start (inclusive).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 end (exclusive).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind (item.decided), or a prefix (item.).")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many events.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List events, oldest first (see also: audit verify, audit seal)."""
    if ctx.invoked_subcommand is not None:
        return
    from . import audit

    _engine()
    flt = audit.EventFilter(
        since=_when(since, "--since"), until=_when(until, "--until"), actor=actor, kind=kind, queue=queue
    )
    after, shown = None, 0
    while shown < limit:
        batch = audit.events(flt, limit=min(1000, limit - shown), after_id=after)
        for e in batch:
            if as_json:
                typer.echo(json.dumps(audit.as_dict(e), ensure_ascii=False))
            else:
                typer.echo(
                    f"{clock.iso(clock.parse(e.at))}  {e.actor:<20}  {e.kind:<22}  {e.queue or '':<16}  "
                    f"{e.item_id or ''}  {json.dumps(e.after, ensure_ascii=False) if e.after else ''}"
                )
        shown += len(batch)
        if len(batch) < 1000:
            break
        after = batch[-1].id


def _when(value: str | None, flag: str):
    try:
        return clock.parse(value) if value else None
    except ValueError:
        raise ValidationFailed(
            f"{flag} takes an ISO 8601 time, e.g. 2026-11-16T00:00:00Z (got {value!r})"
        ) from None


@audit_app.command("verify")
def audit_verify(
    expect: Annotated[
        str | None, typer.Option("--expect", help="The head you wrote down; fail if it differs.")
    ] = None,
) -> None:
    """Check the audit log: every event's MAC, every seal against its events and this
    host's anchor file; exit 1 if anything was edited, deleted, added or left unsealed."""
    from . import audit

    _engine()
    result = audit.verify()
    if not result.ok:
        raise ReviewQueueError(f"audit log verification FAILED: {result.problem}")
    if expect and expect != result.head:
        raise ReviewQueueError(
            f"audit log head is {result.head}, not the expected {expect}: seals were removed"
        )
    typer.echo(
        f"audit log verified: {result.events} event(s) in {result.seals} seal(s); head {result.head}; "
        f"{result.unsealed} event(s) since the last seal; {result.anchored} seal(s) confirmed by this host's "
        "anchor file"
    )


@audit_app.command("seal")
def audit_seal() -> None:
    """Seal what has settled since the last seal (the API and up do this every 30 s)."""
    from . import audit

    _engine()
    sealed = audit.seal()
    typer.echo(f"sealed {sealed.events} event(s); head {sealed.chain}" if sealed else "nothing new to seal")


@app.command("purge")
def purge_cmd(queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.")] = None) -> None:
    """Purge the content of items older than their queue's retention (the API and up do this hourly)."""
    from . import retention

    _engine()
    done = retention.purge(queue=queue)
    typer.echo(", ".join(f"{q}: {n} item(s) purged" for q, n in done.items()) or "nothing to purge")


@app.command("erase")
def erase_cmd(
    queue: Annotated[str | None, typer.Option("--queue", help="The item's queue.")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id", help="Your id for the item.")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Or the item's reviewqueue id.")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the audit log, e.g. a ticket).")
    ] = None,
) -> None:
    """Erase one item's content everywhere it is stored (a data subject's request)."""
    from . import retention

    _engine()
    if not item and not (queue and external_id):
        raise ValidationFailed("give --item ID, or --queue and --external-id")
    erased = retention.erase(item, queue=queue, external_id=external_id, reason=reason, actor=_actor())
    typer.echo(f"erased item {erased}")


# --- servers ------------------------------------------------------------------------


def api_command(host: str, port: int, workers: int, drain_seconds: float | None = None) -> list[str]:
    drain = get_settings().drain_seconds if drain_seconds is None else drain_seconds
    return [
        sys.executable,
        "-m",
        "reviewqueue.cli",
        "api",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--drain-seconds",
        str(drain),
    ]


@app.command("api")
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            "--drain-seconds",
            min=0,
            help="After SIGTERM: seconds to keep serving while /readyz says 503 (default "
            "REVIEWQUEUE_DRAIN_SECONDS, 5).",
        ),
    ] = None,
    no_background: Annotated[
        bool,
        typer.Option(
            "--no-background",
            help="Serve the API only: no webhook delivery, sealing or purging here (run reviewqueue worker).",
        ),
    ] = False,
) -> None:
    """Run the HTTP API (uvicorn), with the background jobs unless --no-background."""
    from . import cluster
    from .api import server

    engine = _engine()
    cluster.check_key(engine=engine)
    os.environ["REVIEWQUEUE_BACKGROUND"] = "0" if no_background else "1"
    drain = get_settings().drain_seconds if drain_seconds is None else drain_seconds
    raise SystemExit(server.serve(host=host, port=port, workers=workers, drain_seconds=drain))


@app.command("worker")
def worker_cmd() -> None:
    """Run only the background jobs (webhook delivery, audit sealing, retention) until
    SIGTERM or Ctrl-C; any number of workers and APIs may run them at once."""
    from . import background, cluster

    engine = _engine()
    cluster.check_key(engine=engine)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    runner = background.start(engine)
    typer.echo("running background jobs (webhooks, audit seal, retention); Ctrl-C to stop")
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    runner.stop()


# --- demo and up --------------------------------------------------------------------


def _print_created(result: dict) -> None:
    """Credentials the demo just created: shown this once, never stored in plain text."""
    if result["logins"]:
        typer.echo("demo logins (shown once; reset with: reviewqueue user passwd NAME):")
        for name, role, password in result["logins"]:
            typer.echo(f"  {role:<8}  user {name!r}  password {password!r}")
    if result["token"]:
        typer.echo(f"demo API token (admin scope, shown once): {result['token']}")


@app.command("demo")
def demo_cmd(
    remove: Annotated[
        bool, typer.Option("--remove", help="Deactivate the demo accounts and revoke its token.")
    ] = False,
) -> None:
    """Seed demo queues, a few hundred realistic items, demo accounts and a token."""
    engine = _engine()
    if remove:
        gone = demo.remove(actor=_actor(), engine=engine)
        typer.echo(
            "; ".join(f"{kind} {name} disabled" for kind, name in gone)
            or "no demo accounts or token are active"
        )
        return
    result = demo.seed(engine=engine)
    typer.echo(f"demo data: {result['items']} new item(s), {result['pending']} waiting for review")
    _print_created(result)
    if not result["logins"]:
        typer.echo("the demo accounts exist already; their passwords were shown when they were made")


UI_SCRIPT = Path(__file__).parent / "ui" / "app.py"


def ui_command(host: str, port: int) -> list[str]:
    # The production settings of .streamlit/config.toml, as flags, so they hold from any
    # working directory; the allowed host names come from REVIEWQUEUE_ALLOWED_HOSTS.
    hosts = [
        f"--server.allowedHosts={h.strip()}" for h in get_settings().allowed_hosts.split(",") if h.strip()
    ]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(UI_SCRIPT),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        "--server.enableXsrfProtection=true",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=none",
        "--runner.magicEnabled=false",
        *hosts,
    ]


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option()] = "127.0.0.1", port: Annotated[int, typer.Option()] = 8501
) -> None:
    """Run the reviewer web app (Streamlit)."""
    _engine()
    os.execv(sys.executable, ui_command(host, port))


@app.command("up")
def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    ui_port: Annotated[int, typer.Option()] = 8501,
    api_port: Annotated[int, typer.Option()] = 8000,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="Seed the demo (queues, items, accounts) into an empty database.")
    ] = False,
    no_demo: Annotated[
        bool, typer.Option("--no-demo", hidden=True, help="The default; kept for old scripts.")
    ] = False,
) -> None:
    """Create the database if needed, start the app and print where it is (--demo: with demo data)."""
    engine = _engine()
    created = demo.seed(engine=engine) if with_demo and not no_demo and demo.is_empty(engine=engine) else None
    env = {**os.environ, "REVIEWQUEUE_BACKGROUND": "1"}
    procs = [
        subprocess.Popen(ui_command(host, ui_port), start_new_session=True),
        subprocess.Popen(api_command(host, api_port, 1), start_new_session=True, env=env),
    ]
    typer.echo("")
    typer.echo(f"reviewqueue {__version__} is up")
    typer.echo(f"  review app : http://{host}:{ui_port}")
    typer.echo(f"  HTTP API   : http://{host}:{api_port}  (docs at /docs)")
    typer.echo(f"  database   : {engine.url.render_as_string(hide_password=True)}")
    if created:
        _print_created(created)
    leftovers = demo.leftovers(engine=engine)
    if leftovers and not created:
        names = ", ".join(f"{kind} {name}" for kind, name in leftovers)
        typer.echo(
            f"demo accounts are active ({names}); sign in with the passwords shown when the demo was "
            "created, or disable them: reviewqueue demo --remove"
        )
    if not users.all_users(engine=engine):
        typer.echo("no accounts yet: create an admin with  reviewqueue user add NAME --role admin")
    _supervise(procs)


def _supervise(procs: list[subprocess.Popen]) -> None:
    """Run until Ctrl-C, SIGTERM or one component exits; then stop them all. The
    prompt is printed once SIGTERM is handled: a SIGTERM sent on seeing it (a service
    manager, a test) must never find ``up`` without its handler and orphan the others."""

    def stop(code: int = 0):
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        raise SystemExit(code)

    signal.signal(signal.SIGTERM, lambda *_: stop())
    typer.echo("press Ctrl-C to stop")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop()
    code = next(p.returncode for p in procs if p.poll() is not None)
    typer.echo(f"a component exited with status {code}; stopping the others", err=True)
    stop(1)


#: How the CLI names the fields a domain error points at.
_FLAGS = {
    "week": "--week",
    "since": "--since",
    "until": "--until",
    "format": "--format",
    "verdict": "--verdict",
    "queue": "--queue",
    "user": "--user",
    "scope": "--scope",
    "name": "--name",
    "role": "--role",
    "threshold": "--threshold",
    "audit_rate": "--audit-rate",
    "lease_seconds": "--lease-seconds",
    "labels": "--label",
    "label_thresholds": "--label-threshold",
    "reject_reasons": "--reject-reason",
    "description": "--description",
    "password": "the password",
}


def _hint(exc: ReviewQueueError) -> str | None:
    """What to do next, in CLI terms."""
    if isinstance(exc, QueueNotFound):
        return f"create it first: reviewqueue queue create {exc.name}"
    return None


def main() -> None:
    try:
        app()
    except ReviewQueueError as exc:
        typer.echo(f"error: {exc}", err=True)
        errors = getattr(exc, "errors", None) or []
        if len(errors) > 1 or (errors and errors[0].get("msg") != str(exc)):
            for err in errors[:20]:
                loc = [str(p) for p in err.get("loc", [])]
                where = _FLAGS.get(loc[0], ".".join(loc)) if len(loc) == 1 else ".".join(loc)
                typer.echo(f"  {where}: {err['msg']}", err=True)
        hint = _hint(exc)
        if hint:
            typer.echo(f"  {hint}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
