"""The CLI end to end, through typer's runner and (for error output) a real process."""

import json
import re
import subprocess
import sys

from typer.testing import CliRunner

from reviewqueue import cli, items, queues, users
from reviewqueue.errors import ValidationFailed

runner = CliRunner()


def run(*args, input=None):
    result = runner.invoke(cli.app, list(args), input=input)
    return result


def test_init_and_queue_commands(db_url, engine):
    assert run("init").exit_code == 0
    r = run(
        "queue",
        "create",
        "tickets",
        "--threshold",
        "0.7",
        "--label",
        "billing",
        "--label",
        "bug",
        "--label-threshold",
        "billing=0.9",
        "--reject-reason",
        "spam",
        "--audit-rate",
        "0",
    )
    assert r.exit_code == 0, r.output
    q = queues.get("tickets", engine=engine)
    assert (q.threshold, q.labels, q.label_thresholds, q.reject_reasons) == (
        0.7,
        ["billing", "bug"],
        {"billing": 0.9},
        ["spam"],
    )
    assert run("queue", "update", "tickets", "--threshold", "0.6").exit_code == 0
    assert queues.get("tickets", engine=engine).threshold == 0.6
    listing = run("queue", "list")
    assert "tickets" in listing.output and "threshold" in listing.output
    as_json = json.loads(run("queue", "list", "--json").output)
    assert as_json[0]["name"] == "tickets"


def test_bad_input_is_a_domain_error(db_url):
    r = run("queue", "create", "Bad Name")
    assert isinstance(r.exception, ValidationFailed)
    r = run("queue", "create", "ok", "--label-threshold", "nonsense")
    assert isinstance(r.exception, ValidationFailed)


def test_errors_print_a_message_not_a_traceback(db_url, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "reviewqueue.cli", "queue", "update", "ghost", "--threshold", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "error: queue 'ghost' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ingest_jsonl_reports_routes(db_url, engine, tmp_path):
    run("queue", "create", "support", "--audit-rate", "0")
    f = tmp_path / "items.jsonl"
    lines = [
        {"input": f"q{i}", "output": f"a{i}", "confidence": 0.1 * i, "external_id": str(i)} for i in range(10)
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    r = run("ingest", str(f), "--queue", "support")
    assert r.exit_code == 0, r.output
    assert "imported 10 item(s): 2 auto_accepted, 8 below_threshold; 0 already present" in r.output
    r = run("ingest", str(f), "--queue", "support")
    assert "imported 0 item(s)" in r.output and "10 already present" in r.output


def test_ingest_bad_file_imports_nothing(db_url, engine, tmp_path):
    run("queue", "create", "support")
    f = tmp_path / "bad.jsonl"
    f.write_text(
        '{"queue": "support", "input": "a", "output": "b", "confidence": 0.5}\n{not json}\n'
        '{"queue": "support", "input": "a", "output": "b", "confidence": NaN}\n[1]\n'
    )
    r = run("ingest", str(f))
    assert isinstance(r.exception, ValidationFailed)
    assert "line 2: not valid JSON" in r.output
    assert "line 3: confidence" in r.output
    assert "line 4: expected a JSON object" in r.output
    assert items.count(items.ItemFilter(), engine=engine) == 0


def test_user_add_with_password_stdin(db_url, engine):
    r = run("user", "add", "maria", "--role", "admin", "--password-stdin", input="s3cret-pass\n")
    assert r.exit_code == 0, r.output
    assert users.authenticate("maria", "s3cret-pass", engine=engine).role == "admin"
    assert "maria" in run("user", "list").output
    r = run("user", "add", "short", "--password-stdin", input="x\n")
    assert isinstance(r.exception, ValidationFailed)


def test_ingest_checks_queues_first_and_reports_file_lines(db_url, engine, tmp_path):
    """A file whose line 5,500 names an unknown queue imports nothing, and says which
    line (not a batch position)."""
    run("queue", "create", "support")
    f = tmp_path / "big.jsonl"
    lines = [
        {"queue": "support", "input": f"q{i}", "output": "a", "confidence": 0.5, "external_id": f"x{i}"}
        for i in range(6000)
    ]
    lines[5499]["queue"] = "ghost"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = run("ingest", str(f))
    assert isinstance(r.exception, ValidationFailed)
    assert "line 5500: queue 'ghost' does not exist" in r.output
    assert items.count(items.ItemFilter(), engine=engine) == 0
    lines[5499]["queue"] = "support"
    lines[3000]["input"] = "x" * 2_000_000  # caught while storing: still no partial import
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = run("ingest", str(f))
    assert isinstance(r.exception, ValidationFailed) and "line 3001" in r.output, r.output
    assert items.count(items.ItemFilter(), engine=engine) == 0


def test_batched_ingest_is_resumable(db_url, engine, tmp_path):
    run("queue", "create", "support")
    f = tmp_path / "items.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(
                {
                    "queue": "support",
                    "input": f"q{i}",
                    "output": "a",
                    "confidence": 0.5,
                    "external_id": f"x{i}",
                }
            )
            for i in range(25)
        )
        + "\n"
    )
    r = run("ingest", str(f), "--batch-size", "10")
    assert r.exit_code == 0 and "run it again" in r.output, r.output
    assert "imported 0 item(s)" in run("ingest", str(f), "--batch-size", "10").output  # a re-run is safe
    no_ids = tmp_path / "no-ids.jsonl"
    no_ids.write_text(json.dumps({"queue": "support", "input": "q", "output": "a", "confidence": 0.5}) + "\n")
    r = run("ingest", str(no_ids), "--batch-size", "10")
    assert (
        isinstance(r.exception, ValidationFailed)
        and "line 1: a batched import needs an external_id" in r.output
    )


def test_user_roles_passwords_and_reactivation(db_url, engine):
    run("user", "add", "maria", "--password-stdin", input="first-pass\n")
    assert run("user", "role", "maria", "lead").exit_code == 0
    assert users.get("maria", engine=engine).role == "lead"
    assert run("user", "passwd", "maria", "--password-stdin", input="second-pass\n").exit_code == 0
    assert users.authenticate("maria", "second-pass", engine=engine)
    run("user", "deactivate", "maria")
    assert not users.get("maria", engine=engine).active
    run("user", "activate", "maria")
    assert users.get("maria", engine=engine).active


def test_demo_generates_credentials_shown_once(db_url, engine):
    r = run("demo")
    assert r.exit_code == 0, r.output
    logins = dict(re.findall(r"user '(\w+)'\s+password '([^']+)'", r.output))
    assert set(logins) == {"admin", "reviewer"} and "demo-2026" not in r.output
    assert users.authenticate("reviewer", logins["reviewer"], engine=engine).role == "reviewer"
    assert "demo API token (admin scope, shown once): rq_" in r.output
    overview = {q.name: q for q in queues.overview(engine=engine)}
    assert set(overview) == {"support-replies", "ticket-triage"}
    assert overview["support-replies"].counts["pending"] > 50
    assert overview["ticket-triage"].labels
    # Four weeks of reviewed history, so the Quality page has a curve and a recommendation.
    from reviewqueue import demo, quality

    history = demo.HISTORY_WEEKS * 7 * demo.HISTORY_PER_DAY
    assert items.count(items.ItemFilter(), engine=engine) == 500 + history
    report = quality.report("support-replies", target_error=0.1, engine=engine)
    assert report.auto_accepted_error.audited >= 150 and report.recommendation is not None
    assert [v.model_version for v in report.by_model_version if v.drift] == ["2026-11-15"]
    again = run("demo")
    assert again.exit_code == 0 and "password '" not in again.output and "rq_" not in again.output
    assert items.count(items.ItemFilter(), engine=engine) == 500 + history
    gone = run("demo", "--remove")
    assert "user admin disabled" in gone.output and "token demo disabled" in gone.output
    assert not users.get("admin", engine=engine).active


def _up(tmp_path, *flags):
    import os

    from .conftest import free_port

    ui_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "REVIEWQUEUE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'rq.db'}",
        "REVIEWQUEUE_EXPORT_DIR": str(tmp_path / "data" / "exports"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reviewqueue.cli",
            "up",
            "--ui-port",
            str(ui_port),
            "--api-port",
            str(api_port),
            *flags,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    out = []
    while not any("Ctrl-C" in line for line in out):
        out.append(proc.stdout.readline())
        assert proc.poll() is None, "".join(out)
    return proc, "".join(out), ui_port, api_port


def _stop(proc):
    import os
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_up_with_the_demo_serves_everything_and_prints_credentials_once(tmp_path):
    """The README's run command, end to end: database, demo, UI, API, printed logins."""
    import time

    import httpx

    proc, text, ui_port, api_port = _up(tmp_path, "--demo")
    try:
        assert f"http://127.0.0.1:{ui_port}" in text and f"http://127.0.0.1:{api_port}" in text
        assert re.search(r"user 'admin'\s+password '", text) and "demo-2026" not in text
        token = re.search(r"demo API token \(admin scope, shown once\): (\S+)", text).group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                ui = httpx.get(f"http://127.0.0.1:{ui_port}/_stcore/health")
                api = httpx.get(
                    f"http://127.0.0.1:{api_port}/v1/queues", headers={"Authorization": f"Bearer {token}"}
                )
                if ui.status_code == 200 and api.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "up did not serve the UI and the API"
            time.sleep(0.3)
        assert {q["name"] for q in api.json()} == {"support-replies", "ticket-triage"}
    finally:
        _stop(proc)
    proc, again, _, _ = _up(tmp_path)  # a second start: no credentials, a warning about the demo's
    _stop(proc)
    assert token not in again and "password '" not in again
    assert "demo accounts are active" in again and "reviewqueue demo --remove" in again


def test_up_without_the_demo_seeds_nothing(tmp_path):
    proc, text, _, _ = _up(tmp_path)
    _stop(proc)
    assert "password" not in text and "no accounts yet" in text
