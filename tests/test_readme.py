"""The README's export section, run as it is written: every ``reviewqueue export``
command, then the pandas / DuckDB / Hugging Face one-liners against what they wrote."""

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from reviewqueue import cli, ingest, queues, review

README = (Path(__file__).parent.parent / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


EXPORTS = section("Exports: weekly correction datasets")


def commands() -> list[str]:
    """Every reviewqueue command of the section: the shell block, the cron lines (as cron
    runs them: ``%`` unescaped, ``date`` evaluated) and the systemd ExecStart."""
    import subprocess

    out = [line.split("#", 1)[0].strip() for line in blocks(EXPORTS, "bash")[0].splitlines()]
    for line in blocks(EXPORTS, "cron")[0].splitlines():
        if "reviewqueue" in line and not line.startswith("#"):
            command = line.split("&&", 1)[1].strip().replace("\\%", "%")
            week = subprocess.run(
                ["date", "-u", "-d", "last week", "+%G-W%V"], capture_output=True, text=True
            )
            out.append(re.sub(r'"\$\(date [^)]*\)"', week.stdout.strip(), command))
    out += [
        line.split("=", 1)[1]
        for line in blocks(EXPORTS, "ini")[0].splitlines()
        if line.startswith("ExecStart=")
    ]
    return [c for c in out if c]


def test_the_export_section_has_commands_and_one_liners():
    assert blocks(EXPORTS, "bash") and blocks(EXPORTS, "python")


def test_every_export_snippet_works_as_written(engine, tmp_path, monkeypatch, fake_clock):
    queues.create("support-replies", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
    for i in range(6):
        ingest.submit(
            {
                "queue": "support-replies",
                "external_id": f"r{i}",
                "input": f"q{i}",
                "output": f"a{i}",
                "confidence": 0.1,
            },
            engine=engine,
        )
        held = review.claim_next("support-replies", "maria", engine=engine)
        verdict = [{"verdict": "approve"}, {"verdict": "correct", "final_output": f"better {i}"}][i % 2]
        review.decide(held.id, "maria", verdict, engine=engine)
    fake_clock.advance(2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "REVIEWQUEUE_EXPORT_DIR", "data/exports"
    )  # the default, relative to the working folder
    from reviewqueue import store
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    store.dispose_engines()  # the CLI's engine then carries the settings above
    runner = CliRunner()
    for command in commands():
        args = shlex.split(command.replace("/srv/datasets", str(tmp_path / "srv")))
        assert args[0].endswith("reviewqueue"), command
        result = runner.invoke(cli.app, args[1:])
        assert result.exit_code == 0, (command, result.output, result.exception)
    assert (tmp_path / "srv" / "parquet" / "support-replies").is_dir()
    # A week export into the same folder as the feed: the week the decisions fall in, and
    # a range over everything (the first-day defect: a folder then held items twice).
    week = datetime.now(UTC).isocalendar()
    for extra in (["--week", f"{week.year}-W{week.week:02d}"], ["--since", "2000-01-01T00:00:00Z"]):
        result = runner.invoke(cli.app, ["export", "--format", "parquet", *extra])
        assert result.exit_code == 0, result.output
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for snippet in blocks(EXPORTS, "python"):
        scope: dict = {}
        exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 (the README's own code)
    for name in ("feed", "weeks"):
        assert len(scope[name]) == 6 and scope[name]["item_id"].is_unique, name
    assert scope["ds"]["train"].num_rows == 6
    counts = dict(
        scope["duckdb"]
        .sql(
            "SELECT verdict, count(*) FROM read_parquet('data/exports/parquet/*/feeds/parquet/*/data.parquet') "
            "GROUP BY 1"
        )
        .fetchall()
    )
    assert counts == {"approve": 3, "correct": 3}


def test_the_python_snippets_work_as_written(engine, capsys):
    """ "Posting outputs from Python" and "Reviewing from Python", run as they are written
    (one after the other, as a reader would), against the queue and user they name."""
    from reviewqueue import items, users

    queues.create(
        "support-replies",
        {"threshold": 0.8, "audit_rate": 0.0, "reject_reasons": ["unsupported_by_sources", "other"]},
        engine=engine,
    )
    users.add("maria", role="reviewer", engine=engine)
    python = blocks(section("Posting outputs from Python"), "python")
    assert len(python) == 2
    scope: dict = {}
    for snippet in python:
        exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 (the README's own code)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("pending below_threshold")
    assert printed[1] == "auto_accepted, pending"
    by_id = {
        x: items.get_by_external_id("support-replies", x, engine=engine)
        for x in ("ticket-8812", "ticket-8814")
    }
    # The first claim took the less confident item; its correction was undone and it was
    # released; the second claim took it again and rejected it.
    statuses = sorted(i.status for i in by_id.values())
    assert statuses == ["pending", "rejected"]
    rejected = next(i for i in by_id.values() if i.status == "rejected")
    assert rejected.decision.reason == "unsupported_by_sources" and rejected.decision.reviewer == "maria"


def test_waiting_for_a_human_runs_as_written(live_server, engine, make_token, capsys):
    """The section's queue command, then its Python example against a live API while a
    reviewer corrects the item: the app refunds what the reviewer said."""
    import threading
    import time

    text = section("Waiting for a human: deadlines, fallbacks and alerts")
    [create] = blocks(text, "bash")
    done = CliRunner().invoke(cli.app, shlex.split(create.replace("\\\n", " "))[1:])
    assert done.exit_code == 0, done.output
    token = make_token("admin")["Authorization"].split()[1]
    [example] = blocks(text, "python")

    def reviewer():
        for _ in range(100):
            held = review.claim_next("refunds", "maria", engine=engine)
            if held is not None:
                review.decide(
                    held.id,
                    "maria",
                    {"verdict": "correct", "final_output": "Refund 40.00 EUR"},
                    engine=engine,
                )
                return
            time.sleep(0.1)

    thread = threading.Thread(target=reviewer)
    thread.start()
    refunded: list = []
    scope = {"token": token, "refund": refunded.append}
    exec(compile(example.replace("http://127.0.0.1:8000", live_server), "README.md", "exec"), scope)  # noqa: S102
    thread.join()
    assert refunded == ["Refund 40.00 EUR"]
    assert capsys.readouterr().out.strip().endswith("correct reviewer")


def test_structured_outputs_run_as_written(engine, capsys):
    [example] = blocks(section("Structured outputs (extraction)"), "python")
    exec(compile(example, "README.md", "exec"), {})  # noqa: S102 (the README's own code)
    assert capsys.readouterr().out.split() == ["pending", "field_threshold"]
