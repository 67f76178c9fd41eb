"""The README's two commands on a machine whose system Python refuses `pip install`
(PEP 668, "externally managed": Debian 12, Ubuntu 23.04 and later): ``./scripts/up``
makes the project's .venv, installs into it, and starts the app; a failing install
stops with pip's words and a message, never a traceback from a missing module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

ROOT = Path(__file__).parent.parent

REFUSING_PYTHON = f"""#!/bin/sh
# A system Python that refuses pip installs outside a virtual environment (PEP 668).
if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ "$3" = "install" ]; then
  case "$VIRTUAL_ENV" in "") echo "error: externally-managed-environment" >&2; exit 1;; esac
fi
exec {sys.base_prefix}/bin/python3 "$@"
"""

pytestmark = pytest.mark.skipif(
    sys.prefix != sys.base_prefix, reason="the suite itself runs in a virtual environment"
)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the project as git has it (no .venv, no data), and a PATH whose python3
    refuses installs."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    with tarfile.open(tmp_path / "tree.tar", "w") as tar:
        for f in files:
            if (ROOT / f).exists():
                tar.add(ROOT / f, arcname=f)
    copy = tmp_path / "reviewqueue"
    copy.mkdir()
    with tarfile.open(tmp_path / "tree.tar") as tar:
        tar.extractall(copy, filter="data")
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "python3").write_text(REFUSING_PYTHON)
    (fakebin / "python3").chmod(0o755)
    return copy


def _env(checkout: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWQUEUE_") and k != "VIRTUAL_ENV"}
    env["PATH"] = f"{checkout.parent / 'bin'}:{env['PATH']}"
    return env


def test_up_on_an_externally_managed_python_makes_and_uses_a_venv(checkout):
    ui, api = free_port(), free_port()
    proc = subprocess.Popen(
        ["./scripts/up", "--ui-port", str(ui), "--api-port", str(api)],
        cwd=checkout,
        env=_env(checkout),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        output = "".join(lines)
        assert "press Ctrl-C to stop" in output, output
        assert "making the project's Python environment in .venv" in output
        assert f"http://127.0.0.1:{ui}" in output and "demo logins" in output
        assert httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ui}/_stcore/health", timeout=10).status_code == 200
        where = subprocess.run(
            [str(checkout / ".venv/bin/python"), "-c", "import reviewqueue; print(reviewqueue.__file__)"],
            capture_output=True,
            text=True,
            cwd="/",
        ).stdout
        assert where.startswith(str(checkout))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert (checkout / "data" / "reviewqueue.db").exists()


def test_a_failing_install_says_so_and_stops(checkout):
    (checkout / "pyproject.toml").write_text(
        (checkout / "pyproject.toml").read_text().replace('"typer>=0.12"', '"typer>=999"')
    )
    result = subprocess.run(
        ["./scripts/up"], cwd=checkout, env=_env(checkout), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "error: installing reviewqueue (.) with .venv/bin/python failed" in result.stderr
    assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr
