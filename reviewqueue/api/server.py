"""Running the API: uvicorn with a graceful drain, one process or several.

``reviewqueue api`` calls :func:`serve`. On SIGTERM (or the first Ctrl-C) a process
starts draining (``lifecycle.py``): ``/readyz`` turns 503 at once, requests are still
served for ``drain_seconds`` (each response closing its connection), then uvicorn stops
listening, waits for the requests in flight and exits. A second Ctrl-C stops at once.

With ``workers > 1`` this process binds the socket and runs that many worker processes
on it (``python -m reviewqueue.api.server --fd N``), passes SIGTERM on to them, and
starts a new one when a worker dies.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import threading
import time

import uvicorn

from .. import waiting
from . import lifecycle

log = logging.getLogger("reviewqueue.api")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float):
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig, frame) -> None:
        if lifecycle.draining.is_set():
            if sig == signal.SIGINT:  # a second Ctrl-C: stop now
                self.should_exit = self.force_exit = True
            return
        lifecycle.draining.set()
        log.warning("draining: /readyz answers 503; stopping in %.1f s", self.drain_seconds)
        # uvicorn's own handler is not called: it would raise the signal again once
        # stopped, and a process that drained as asked exits 0, not "killed by SIGTERM".
        self._timer = threading.Timer(self.drain_seconds, self._stop)
        self._timer.daemon = True
        self._timer.start()

    def _stop(self) -> None:
        log.warning("drained: no longer listening; finishing the requests in flight")
        waiting.wake_everyone()  # long polls answer with the item as it is now
        self.should_exit = True


def _config(*, host: str, port: int, fd: int | None = None) -> uvicorn.Config:
    # Access lines sit below the warning level anyway; no access log also skips
    # building them, for every request.
    return uvicorn.Config(
        "reviewqueue.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        fd=fd,
        server_header=False,
        # The client address is ours to work out (netaddr.py, REVIEWQUEUE_TRUSTED_PROXIES):
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        # Requests in flight when the drain ends get this long to finish.
        timeout_graceful_shutdown=30,
    )


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("reviewqueue").setLevel(logging.INFO)


def run_one(*, host: str, port: int, drain_seconds: float, fd: int | None = None) -> int:
    """Serve in this process until stopped; the exit status."""
    _logging()
    server = DrainingServer(_config(host=host, port=port, fd=fd), drain_seconds)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 3


def serve(*, host: str, port: int, workers: int, drain_seconds: float) -> int:
    if workers <= 1:
        return run_one(host=host, port=port, drain_seconds=drain_seconds)
    _logging()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    fd = sock.fileno()

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reviewqueue.api.server",
                "--fd",
                str(fd),
                "--host",
                host,
                "--port",
                str(port),
                "--drain-seconds",
                str(drain_seconds),
            ],
            pass_fds=[fd],
        )

    children = [start() for _ in range(workers)]
    stopping = threading.Event()

    def stop(sig, _frame) -> None:
        if stopping.is_set() and sig == signal.SIGINT:
            for child in children:
                if child.poll() is None:
                    child.kill()
            return
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failures = 0
    while not stopping.is_set():
        time.sleep(0.5)
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or stopping.is_set():
                continue
            if code == 3:  # it never started (a bad setting, another host's key): do not loop
                log.error("an API worker could not start; stopping")
                stop(signal.SIGTERM, None)
                failures += 1
                break
            log.warning("API worker %s exited with status %s; starting another", child.pid, code)
            children[i] = start()
    for child in children:
        child.wait()
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reviewqueue.api.server")
    parser.add_argument("--fd", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--drain-seconds", type=float, default=5.0)
    args = parser.parse_args()
    raise SystemExit(run_one(host=args.host, port=args.port, drain_seconds=args.drain_seconds, fd=args.fd))


if __name__ == "__main__":
    main()
