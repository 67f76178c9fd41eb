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
import time
from pathlib import Path
from typing import Annotated

import typer

from . import __version__, clock, demo, ingest, queues, store, tokens, users, webhooks
from .errors import QueueNotFound, ReviewQueueError, ValidationFailed
from .settings import get_settings
from .vocab import DECIDED, Role, Scope, Status

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


def _engine():
    engine = store.get_engine()
    store.upgrade(engine)
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


def _queue_settings(
    description, threshold, audit_rate, lease_seconds, label, label_threshold, reject_reason
) -> dict:
    settings: dict = {}
    if description is not None:
        settings["description"] = description
    if threshold is not None:
        settings["threshold"] = threshold
    if audit_rate is not None:
        settings["audit_rate"] = audit_rate
    if lease_seconds is not None:
        settings["lease_seconds"] = lease_seconds
    if label:
        settings["labels"] = label
    if reject_reason:
        settings["reject_reasons"] = reject_reason
    if label_threshold:
        pairs = {}
        for spec in label_threshold:
            name, sep, value = spec.partition("=")
            try:
                pairs[name] = float(value)
            except ValueError:
                sep = ""
            if not sep or not name:
                raise ValidationFailed(
                    f"--label-threshold takes LABEL=VALUE, e.g. billing=0.9 (got {spec!r})"
                )
        settings["label_thresholds"] = pairs
    return settings


Description = Annotated[str | None, typer.Option(help="What the queue is for.")]
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
) -> None:
    """Create queue NAME."""
    _engine()
    settings = _queue_settings(
        description, threshold, audit_rate, lease_seconds, label, label_threshold, reject_reason
    )
    q = queues.create(name, settings, actor="cli")
    typer.echo(
        f"created queue {q.name}: threshold {q.threshold}, audit rate {q.audit_rate}, lease {q.lease_seconds}s"
    )


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
) -> None:
    """Change settings of queue NAME (only the options given)."""
    _engine()
    settings = _queue_settings(
        description, threshold, audit_rate, lease_seconds, label, label_threshold, reject_reason
    )
    q = queues.update(name, settings, actor="cli")
    typer.echo(
        f"updated queue {q.name}: threshold {q.threshold}, audit rate {q.audit_rate}, lease {q.lease_seconds}s"
    )


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
                sum(q.counts.get(s, 0) for s in DECIDED),
                q.counts.get(Status.AUTO_ACCEPTED, 0),
            ]
            for q in rows
        ],
        ["queue", "threshold", "audit", "pending", "in_review", "decided", "auto_accepted"],
    )


# --- ingest -------------------------------------------------------------------------


@app.command("ingest")
def ingest_file(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one item per line ('-' for stdin).")],
    queue: Annotated[str | None, typer.Option(help="Queue for lines that name none.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 5000,
) -> None:
    """Import model outputs from a JSONL file; prints where they were routed.

    The whole file is checked first: if any line is bad, nothing is imported and every
    bad line is listed. It is then written in batches, each atomic; lines with an
    external_id can be re-imported safely after an interruption.
    """
    _engine()
    stream = sys.stdin if str(file) == "-" else None
    if stream is None and not file.exists():
        raise ValidationFailed(f"no such file: {file}")
    records, errors = [], []
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
            records.append((lineno, record))
    from pydantic import ValidationError

    from .schemas import ItemIn

    for lineno, record in records:
        try:
            ItemIn.model_validate(record)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                errors.append((lineno, f"line {lineno}: {'.'.join(map(str, err['loc']))}: {err['msg']}"))
    if errors:
        errors = [msg for _, msg in sorted(errors, key=lambda e: e[0])]
        for msg in errors[:50]:
            typer.echo(msg, err=True)
        more = f" (first 50 shown of {len(errors)})" if len(errors) > 50 else ""
        raise ValidationFailed(f"nothing imported: {len(errors)} bad line(s){more}")

    totals: dict[str, int] = {}
    duplicates = 0
    with typer.progressbar(length=len(records), label="importing", file=sys.stderr) as bar:
        for start in range(0, len(records), batch_size):
            chunk = [r for _, r in records[start : start + batch_size]]
            for result in ingest.submit_many(chunk, actor="cli"):
                if result.duplicate:
                    duplicates += 1
                else:
                    totals[result.route] = totals.get(result.route, 0) + 1
            bar.update(len(chunk))
    new = sum(totals.values())
    routed = ", ".join(f"{n} {route}" for route, n in sorted(totals.items())) or "nothing new"
    typer.echo(f"imported {new} item(s): {routed}; {duplicates} already present")


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
    users.add(name, role=role, password=password, email=email, actor="cli")
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
    """Stop an account from signing in (its history stays)."""
    _engine()
    users.update(name, active=False, actor="cli")
    typer.echo(f"deactivated {name}")


# --- tokens and webhooks ------------------------------------------------------------


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name to list and revoke it by.")],
    scope: Annotated[Scope, typer.Option("--scope", help="What the token may do.")],
    queue: Annotated[list[str] | None, typer.Option("--queue", help="Limit to this queue; repeat.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="The user a review token acts as.")] = None,
) -> None:
    """Create an API token. The token is printed once, alone on the last line."""
    _engine()
    record, plaintext = tokens.create(name, scope, queues=queue or [], user=user, actor="cli")
    limits = ", ".join(record.queues) or "all queues"
    typer.echo(f"created {scope} token {name!r} for {limits}; store it now, it is not shown again:", err=True)
    typer.echo(plaintext)


@token_app.command("list")
def token_list() -> None:
    """List tokens (never the tokens themselves)."""
    _engine()
    _echo_table(
        [
            [
                t.name,
                t.scope,
                ",".join(t.queues) or "*",
                t.user or "",
                t.prefix + "...",
                "revoked" if t.revoked_at else "active",
                clock.iso(t.last_used_at) or "",
            ]
            for t in tokens.all_tokens()
        ],
        ["name", "scope", "queues", "user", "token", "state", "last used"],
    )


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke a token by name; it stops working at once."""
    _engine()
    tokens.revoke(name, actor="cli")
    typer.echo(f"revoked {name}")


@webhooks_app.command("add")
def webhooks_add(
    queue: str,
    url: str,
    secret: Annotated[str | None, typer.Option(help="Signing secret (default: generated).")] = None,
) -> None:
    """POST QUEUE's decisions to URL, signed. Prints the signing secret."""
    _engine()
    hook = webhooks.add(queue, url, secret=secret)
    typer.echo(f"webhook {hook.id} for {queue} -> {url}")
    typer.echo(f"signing secret: {hook.secret}")


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
    """Stop sending to a webhook (pending deliveries stay visible)."""
    _engine()
    webhooks.remove(webhook_id)
    typer.echo(f"webhook {webhook_id} deactivated")


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
    worker = webhooks.Worker(engine)
    typer.echo("delivering webhooks; Ctrl-C to stop")
    try:
        worker.run()
    except KeyboardInterrupt:
        pass


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
    """Write decided items as a dataset; with no period, everything since the last export."""
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
        since=since_dt,
        until=until_dt,
        verdicts=verdict,
        actor="cli",
        workers=workers,
    ):
        counts = ", ".join(f"{n} {v}" for v, n in sorted(r.counts_by_verdict.items())) or "no decisions"
        typer.echo(f"{r.queue}: {r.rows} row(s) ({counts}) -> {r.path}")


@app.command("exports")
def exports_list(limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20) -> None:
    """List past exports (the incremental watermark is the newest 'until')."""
    from . import export as exports

    _engine()
    _echo_table(
        [
            [r.id, r.queue, r.format, r.mode, clock.iso(r.since), clock.iso(r.until), r.rows, r.path]
            for r in exports.runs(limit=limit)
        ],
        ["id", "queue", "format", "mode", "since", "until", "rows", "file"],
    )


# --- servers ------------------------------------------------------------------------


def api_command(host: str, port: int, workers: int) -> list[str]:
    # Access lines sit below the warning level anyway; --no-access-log also skips
    # building them, for every request.
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "reviewqueue.api.app:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-server-header",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


@app.command("api")
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
) -> None:
    """Run the HTTP API (uvicorn) with the webhook delivery worker."""
    _engine()
    os.environ["REVIEWQUEUE_WEBHOOK_WORKER"] = "1"
    os.execv(sys.executable, api_command(host, port, workers))


# --- demo and up --------------------------------------------------------------------


def _print_logins() -> None:
    for name, role, password in demo.DEMO_USERS:
        typer.echo(f"  {role:<8}  user {name!r}  password {password!r}")


@app.command("demo")
def demo_cmd() -> None:
    """Seed demo queues, a few hundred realistic items and demo accounts."""
    _engine()
    result = demo.seed()
    typer.echo(f"demo data: {result['items']} new item(s), {result['pending']} waiting for review")
    typer.echo("demo logins:")
    _print_logins()


UI_SCRIPT = Path(__file__).parent / "ui" / "app.py"


def ui_command(host: str, port: int) -> list[str]:
    # The production settings of .streamlit/config.toml, as flags, so they hold from
    # any working directory (allowedHosts stays in the config file: it is per site).
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
    no_demo: Annotated[
        bool, typer.Option("--no-demo", help="Do not seed demo data into an empty database.")
    ] = False,
) -> None:
    """Create the database if needed, seed the demo when empty, start the app and print where it is."""
    engine = _engine()
    if not no_demo and demo.is_empty(engine=engine):
        demo.seed(engine=engine)
    demo_token = (
        _demo_token(engine) if users.get(demo.ADMIN, engine=engine) is not None and not no_demo else None
    )
    env = {**os.environ, "REVIEWQUEUE_WEBHOOK_WORKER": "1"}
    procs = [
        subprocess.Popen(ui_command(host, ui_port), start_new_session=True),
        subprocess.Popen(api_command(host, api_port, 1), start_new_session=True, env=env),
    ]
    typer.echo("")
    typer.echo(f"reviewqueue {__version__} is up")
    typer.echo(f"  review app : http://{host}:{ui_port}")
    typer.echo(f"  HTTP API   : http://{host}:{api_port}  (docs at /docs)")
    typer.echo(f"  database   : {engine.url.render_as_string(hide_password=True)}")
    if demo_token:
        typer.echo("demo logins:")
        _print_logins()
        typer.echo(f"  demo API token (admin): {demo_token}")
    typer.echo("press Ctrl-C to stop")
    _supervise(procs)


def _demo_token(engine) -> str:
    """The demo's admin API token: created with the demo, kept in data/demo-token so
    every ``up`` can print it (only a hash is in the database)."""
    path = Path(get_settings().export_dir).parent / "demo-token"
    if path.exists():
        try:
            tokens.authenticate(path.read_text().strip(), engine=engine)
            return path.read_text().strip()
        except ReviewQueueError:
            pass  # a token for another database: make a new one
    _, plaintext = tokens.rotate("demo", Scope.ADMIN, user=demo.ADMIN, actor="demo", engine=engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plaintext + "\n")
    path.chmod(0o600)
    return plaintext


def _supervise(procs: list[subprocess.Popen]) -> None:
    """Run until Ctrl-C, SIGTERM or one component exits; then stop them all."""

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
