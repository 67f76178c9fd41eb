"""Running reviewqueue: the API, the background worker, the review app, everything at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..errors import ReviewQueueError
from ._lazy import lazy
from .base import (
    _engine,
    app,
    get_settings,
)
from .setup import _print_created

demo, queues, users, webhooks = lazy("demo", "queues", "users", "webhooks")


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
    from .. import cluster
    from ..api import server

    engine = _engine()
    cluster.check_key(engine=engine)
    os.environ["REVIEWQUEUE_BACKGROUND"] = "0" if no_background else "1"
    drain = get_settings().drain_seconds if drain_seconds is None else drain_seconds
    raise SystemExit(server.serve(host=host, port=port, workers=workers, drain_seconds=drain))


@app.command("worker")
def worker_cmd() -> None:
    """Run only the background jobs (webhook delivery, audit sealing, retention) until
    SIGTERM or Ctrl-C; any number of workers and APIs may run them at once."""
    from .. import background, cluster

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


UI_SCRIPT = Path(__file__).parent.parent / "ui" / "server.py"


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
        # One machine, no balancer to tell: nothing to drain for.
        subprocess.Popen(api_command(host, api_port, 1, drain_seconds=0), start_new_session=True, env=env),
    ]
    _wait_until_answering(
        procs,
        [f"http://{_local(host)}:{api_port}/readyz", f"http://{_local(host)}:{ui_port}/_stcore/health"],
    )
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


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _wait_until_answering(procs: list[subprocess.Popen], urls: list[str], timeout: float = 120) -> None:
    """Return once every URL answers 200 (the URLs printed next then work); stop
    everything with a message if a component exits or does not answer in time."""
    import httpx

    deadline = time.monotonic() + timeout
    waiting = list(urls)
    while waiting:
        for p in procs:
            if p.poll() is not None:
                _stop_all(procs)
                raise ReviewQueueError(
                    f"a component exited with status {p.returncode} while starting; see above"
                )
        try:
            if httpx.get(waiting[0], timeout=2).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop_all(procs)
            raise ReviewQueueError(f"{waiting[0]} did not answer within {timeout:.0f} s; stopped")
        time.sleep(0.2)


def _stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _supervise(procs: list[subprocess.Popen]) -> None:
    """Run until Ctrl-C, SIGTERM or one component exits; then stop them all. The
    prompt is printed once SIGTERM is handled: a SIGTERM sent on seeing it (a service
    manager, a test) must never find ``up`` without its handler and orphan the others."""

    def stop(code: int = 0):
        _stop_all(procs)
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
