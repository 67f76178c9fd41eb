"""Correction datasets: columns and types in every reader, per-verdict semantics,
incremental runs without gaps or repeats, reproducible weeks, crash safety."""

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from reviewqueue import export, ingest, review, textdiff
from reviewqueue.errors import ValidationFailed
from reviewqueue.export import COLUMNS, run, slices
from reviewqueue.export.writers import arrow_text
from reviewqueue.models import ExportRun, Review

from .conftest import item


def decide_all(engine, decisions):
    """decisions: list of (item kwargs, decision dict)."""
    for i, (over, d) in enumerate(decisions):
        ingest.submit(item(i, **over), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", d, engine=engine)


TRICKY = 'naïve "quoted", comma\nnew line ✓ 中文 <b>html</b>'


@pytest.fixture
def decided(engine, queue, fake_clock):
    decide_all(
        engine,
        [
            ({"output": "the refund takes five days", "metadata": {"k": 1}}, {"verdict": "approve"}),
            (
                {"output": "the refund takes five days"},
                {"verdict": "correct", "final_output": "the refund takes seven business days"},
            ),
            ({"output": {"answer": 42}}, {"verdict": "correct", "final_output": {"answer": 43}}),
            ({"output": "nonsense"}, {"verdict": "reject", "reason": "incorrect", "comment": TRICKY}),
            ({"input": TRICKY, "output": TRICKY}, {"verdict": "approve"}),
        ],
    )
    # On PostgreSQL the incremental bound trails "now" by a second (clock skew margin).
    fake_clock.advance(2)


def test_jsonl_semantics(engine, decided, tmp_path):
    [r] = export.export(tmp_path, fmt="jsonl", engine=engine)
    rows = [json.loads(line) for line in r.path.read_text().splitlines()]
    assert [list(x) for x in rows] == [COLUMNS] * 5
    approve, correct, correct_json, reject, tricky = rows
    assert approve["reference_output"] == approve["output"] and approve["edit_distance"] == 0
    assert (
        correct["reference_output"] == "the refund takes seven business days"
        and correct["edit_distance"] == 2
    )
    assert correct_json["output"] == {"answer": 42} and correct_json["reference_output"] == {"answer": 43}
    assert (
        reject["reference_output"] is None
        and reject["edit_distance"] is None
        and reject["reason"] == "incorrect"
    )
    assert tricky["input"] == TRICKY and reject["comment"] == TRICKY
    assert approve["metadata"] == {"k": 1} and approve["decided_at"].endswith("Z")
    assert [x["decided_at"] for x in rows] == sorted(x["decided_at"] for x in rows)
    manifest = json.loads(r.manifest.read_text())
    assert manifest["rows"] == 5 and manifest["counts_by_verdict"] == {
        "approve": 2,
        "correct": 2,
        "reject": 1,
    }
    assert manifest["sha256"] == export.sha256_of(r.path) and manifest["schema_version"] == 3
    # One reviewer per item: the reviews column holds the final decision, agreement 1.
    assert [x["agreement"] for x in rows] == [1.0] * 5
    assert correct["reviews"] == [
        {
            "reviewer": correct["reviewer"],
            "verdict": "correct",
            "final_output": correct["reference_output"],
            "final_label": None,
            "reason": None,
            "comment": correct["comment"],
            "decided_at": correct["decided_at"],
            "adjudication": False,
        }
    ]
    assert (
        manifest["queue"] == "support" and manifest["format"] == "jsonl" and manifest["reviewqueue_version"]
    )


def test_every_format_loads_in_pandas_duckdb_and_datasets(engine, decided, tmp_path):
    import duckdb

    paths = {
        fmt: export.export(
            tmp_path, fmt=fmt, engine=engine, week_spec=None, since=datetime(2000, 1, 1, tzinfo=UTC)
        )[0].path
        for fmt in ("jsonl", "csv", "parquet")
    }
    pq = pd.read_parquet(paths["parquet"])
    assert list(pq.columns) == COLUMNS and len(pq) == 5
    assert str(pq["confidence"].dtype) == "float64"
    assert pq["edit_distance"].tolist()[:3] == [0, 2, 1] and pd.isna(pq["edit_distance"].tolist()[3])
    csv_df = pd.read_csv(paths["csv"], keep_default_na=False)
    assert list(csv_df.columns) == COLUMNS and csv_df["comment"].tolist()[3] == TRICKY
    assert csv_df["input"].tolist()[4] == TRICKY  # commas, quotes, newlines and non-ASCII survive
    jl = pd.read_json(paths["jsonl"], lines=True)
    assert list(jl.columns) == COLUMNS
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{paths['parquet']}')").fetchone()[0] == 5
    assert con.execute(f"SELECT count(*) FROM read_json_auto('{paths['jsonl']}')").fetchone()[0] == 5
    got = con.execute(
        f"SELECT comment FROM read_csv_auto('{paths['csv']}') WHERE verdict = 'reject'"
    ).fetchone()[0]
    assert got == TRICKY
    from datasets import load_dataset

    for builder, fmt in (("parquet", "parquet"), ("json", "jsonl"), ("csv", "csv")):
        ds = load_dataset(builder, data_files=str(paths[fmt]), split="train", cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == 5 and ds.column_names == COLUMNS


def test_empty_period_writes_valid_empty_files(engine, queue, tmp_path):
    import pyarrow.parquet as pq

    for fmt in ("jsonl", "csv", "parquet", "chat-jsonl"):
        [r] = export.export(tmp_path, fmt=fmt, week_spec="2020-W01", engine=engine)
        assert r.rows == 0 and json.loads(r.manifest.read_text())["rows"] == 0
    base = "support/weeks/2020-W01"
    assert pq.read_table(tmp_path / "parquet" / base / "data.parquet").schema.names == COLUMNS
    assert (tmp_path / "csv" / base / "data.csv").read_text().strip() == ",".join(COLUMNS)
    assert (tmp_path / "jsonl" / base / "data.jsonl").read_text() == ""


def test_verdict_filter_and_chat_format(engine, decided, tmp_path):
    [r] = export.export(tmp_path, fmt="jsonl", verdicts=["correct"], engine=engine)
    assert {json.loads(x)["verdict"] for x in r.path.read_text().splitlines()} == {"correct"}
    [c] = export.export(tmp_path, fmt="chat-jsonl", engine=engine)
    chats = [json.loads(x) for x in c.path.read_text().splitlines()]
    assert len(chats) == 4  # approvals and corrections, not the rejection
    assert chats[1]["messages"] == [
        {"role": "user", "content": "question 1"},
        {"role": "assistant", "content": "the refund takes seven business days"},
    ]


def test_week_export_is_byte_identical(engine, decided, tmp_path):
    wk = datetime.now(UTC).isocalendar()
    spec = f"{wk.year}-W{wk.week:02d}"
    for fmt in ("jsonl", "csv", "parquet"):
        first = export.export(tmp_path, fmt=fmt, week_spec=spec, engine=engine)[0]
        data1 = first.path.read_bytes()
        second = export.export(tmp_path, fmt=fmt, week_spec=spec, engine=engine)[0]
        assert first.rows == 5 and second.path.read_bytes() == data1


def test_week_bounds_are_monday_to_monday_utc(engine, queue, tmp_path, fake_clock):
    monday = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47
    moments = [
        monday - timedelta(seconds=1),
        monday,
        monday + timedelta(days=7, seconds=-1),
        monday + timedelta(days=7),
    ]
    for i, moment in enumerate(moments):
        fake_clock.set(moment)
        ingest.submit(item(i), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    for fmt in ("jsonl", "parquet"):
        [r] = export.export(tmp_path, fmt=fmt, week_spec="2026-W47", engine=engine)
        assert r.rows == 2 and r.counts_by_verdict == {"approve": 2}
    rows = [
        json.loads(x) for x in (tmp_path / "jsonl/support/weeks/2026-W47/data.jsonl").read_text().splitlines()
    ]
    assert [x["external_id"] for x in rows] == ["ext-1", "ext-2"]
    assert rows[0]["decided_at"].startswith("2026-11-16T00:00:00.")


def test_three_incremental_runs_give_each_decision_once(engine, queue, tmp_path, fake_clock):
    seen = []
    n = 0
    for _run in range(3):
        for _ in range(4):
            ingest.submit(item(n), engine=engine)
            held = review.claim_next("support", "ann", engine=engine)
            review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
            n += 1
        fake_clock.advance(2)  # PostgreSQL's settled bound trails "now" by a second
        [r] = export.export(tmp_path, fmt="jsonl", engine=engine)
        seen += [json.loads(x)["item_id"] for x in r.path.read_text().splitlines()]
    assert len(seen) == 12 == len(set(seen))
    [empty] = export.export(tmp_path, fmt="jsonl", engine=engine)
    assert empty.rows == 0


def test_decision_landing_during_export_is_not_lost(engine, queue, tmp_path, fake_clock, monkeypatch):
    """A decision committed while the export reads is after the bound: next run has it."""
    ingest.submit_many([item(1), item(2)], engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(2)
    real_rows = run.read_rows

    def rows_then_decide(*args, **kwargs):
        yield from real_rows(*args, **kwargs)
        other = review.claim_next("support", "bob", engine=engine)
        review.decide(other.id, "bob", {"verdict": "approve"}, engine=engine)

    monkeypatch.setattr(run, "read_rows", rows_then_decide)
    [first] = export.export(tmp_path, fmt="jsonl", engine=engine)
    monkeypatch.setattr(run, "read_rows", real_rows)
    fake_clock.advance(2)
    [second] = export.export(tmp_path, fmt="jsonl", engine=engine)
    assert (first.rows, second.rows) == (1, 1)


def test_failed_export_leaves_no_file_and_keeps_watermark(engine, decided, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        yield []
        raise RuntimeError("disk full")

    monkeypatch.setattr(run, "read_rows", boom)
    with pytest.raises(RuntimeError):
        export.export(tmp_path, fmt="parquet", engine=engine)
    assert not list(tmp_path.glob("*/support/**/data.*"))
    assert not list((tmp_path / ".partial").iterdir())
    assert export.watermark(export.default_feed("parquet", ""), "support", engine=engine) is None


def test_killed_export_leaves_no_file(engine, queue, tmp_path, db_url, fake_clock):
    ingest.submit_many([item(i) for i in range(3000)], engine=engine)
    for _ in range(3000):
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    script = (
        "import time, sys\n"
        "from reviewqueue import export\n"
        "from reviewqueue.export import run\n"
        "real = run.read_rows\n"
        "def slow(*a, **k):\n"
        "    for chunk in real(*a, **k):\n"
        "        yield chunk[:10]\n"
        "        print('chunk', flush=True)\n"
        "        time.sleep(30)\n"
        "run.read_rows = slow\n"
        f"export.export({str(tmp_path)!r}, fmt='jsonl')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "REVIEWQUEUE_DATABASE_URL": db_url},
    )
    assert proc.stdout.readline().strip() == "chunk"  # mid-export
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not list(tmp_path.glob("*/support/**/data.*"))
    assert export.watermark(export.default_feed("jsonl", ""), "support", engine=engine) is None
    leftovers = list((tmp_path / ".partial").iterdir())
    assert leftovers  # the killed run's half-written file, outside the dataset
    fake_clock.advance(2)  # past PostgreSQL's one-second settling margin
    [again] = export.export(tmp_path, fmt="jsonl", engine=engine)
    assert again.rows == 3000
    assert not any(p.exists() for p in leftovers)


def test_undone_decision_is_not_exported(engine, queue, tmp_path):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    rv = review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    review.undo(rv.id, "ann", engine=engine)
    [r] = export.export(tmp_path, fmt="jsonl", since=datetime.now(UTC) - timedelta(hours=1), engine=engine)
    assert r.rows == 0


def test_bad_arguments(engine, queue, tmp_path):
    from reviewqueue.errors import ValidationFailed

    for kwargs in (
        {"fmt": "xml"},
        {"week_spec": "2026-W99"},
        {"week_spec": "soon"},
        {"verdicts": ["maybe"]},
        {"queues": ["ghost"]},
        {"week_spec": "2026-W01", "since": datetime.now(UTC)},
    ):
        with pytest.raises(ValidationFailed):
            export.export(tmp_path, engine=engine, **kwargs)


def test_edit_distance():
    assert textdiff.edit_distance("a b c", "a b c") == 0
    assert textdiff.edit_distance("a b c", "a x c") == 1
    assert textdiff.edit_distance("a b c", "a b c d e") == 2
    assert textdiff.edit_distance("", "one two") == 2
    assert textdiff.edit_distance("the cat sat", "a dog sat down") == 3


TEXT_CASES = [
    "plain",
    'say "hi"',
    "two\nlines\tand tab\r",
    "a\\nb (a backslash, then n)",
    "C:\\path\\",
    "ünï ✓ 中文",
    "emoji 😀",
    "slash / \b \f",
    "",
    " ",
    "\\u0041 literally",
    '"',
    "\\",
]


def test_arrow_text_matches_json_decoding():
    import pyarrow as pa

    values = TEXT_CASES + [42, 0.5, True, None, {"answer": "x\ny"}, ["a", 1]]
    raw = [
        None if v is None else json.dumps(v) for v in values
    ]  # stored with ensure_ascii, as SQLAlchemy does
    raw += [json.dumps(v, ensure_ascii=False) for v in TEXT_CASES]  # and as other writers might
    expected = [None if r is None else (json.loads(r) if r.startswith('"') else r) for r in raw]
    assert arrow_text(pa.array(raw, type=pa.string())).to_pylist() == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=20), st.booleans())
def test_arrow_text_property(texts, ascii_only):
    import pyarrow as pa

    raw = [json.dumps(t, ensure_ascii=ascii_only) for t in texts]
    assert arrow_text(pa.array(raw, type=pa.string())).to_pylist() == texts


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "chat-jsonl"])
def test_parallel_slices_write_the_same_file(engine, decided, tmp_path, monkeypatch, fmt):
    """Worker processes converting slices of two decisions each give the same data as
    one process reading it all."""
    monkeypatch.setattr(slices, "SLICE_ROWS", 2)
    wk = datetime.now(UTC).isocalendar()
    spec = f"{wk.year}-W{wk.week:02d}"
    assert len(slices.cut(engine, "support", export.week(spec))) == 3
    [one] = export.export(tmp_path / "one", fmt=fmt, week_spec=spec, engine=engine, workers=1)
    [two] = export.export(tmp_path / "two", fmt=fmt, week_spec=spec, engine=engine, workers=2)
    assert two.rows == one.rows and two.counts_by_verdict == one.counts_by_verdict
    if fmt == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_table(two.path).equals(pq.read_table(one.path))
        assert pq.ParquetFile(two.path).schema_arrow == export.parquet_schema()
    else:
        assert two.path.read_bytes() == one.path.read_bytes()
    assert not list((tmp_path / "two" / ".partial").iterdir())  # parts removed


def test_slices_cover_the_period_when_decisions_share_an_instant(engine, decided, monkeypatch):
    monkeypatch.setattr(slices, "SLICE_ROWS", 2)
    with engine.begin() as conn:
        conn.execute(Review.__table__.update().values(created_at=datetime(2026, 11, 18, 12, tzinfo=UTC)))
    period = export.week("2026-W47")
    cuts = slices.cut(engine, "support", period)
    assert cuts[0][0] == period.since and cuts[-1][1] == period.until
    assert all(a < b for a, b in cuts) and all(x[1] == y[0] for x, y in zip(cuts, cuts[1:], strict=False))


def test_worker_errors_reach_the_caller(tmp_path):
    pool = slices.Workers(1)
    try:
        pool.send(
            0,
            {
                "url": f"sqlite:///{tmp_path}/x.db",  # never a folder in the working directory
                "fmt": "jsonl",
                "queue": "q",
                "since": "2026-01-01T00:00:00Z",
                "until": "2026-01-02T00:00:00Z",
                "verdicts": None,
                "path": "/nonexistent-dir/part",
            },
        )
        with pytest.raises(RuntimeError, match="export worker failed"):
            pool.receive(0)
        pool._procs[0].kill()
        pool._procs[0].wait()
        with pytest.raises(RuntimeError, match="exited"):
            pool.receive(0)
    finally:
        pool.close()


def test_a_failed_parallel_export_leaves_no_file_and_keeps_the_watermark(
    engine, decided, tmp_path, monkeypatch
):
    monkeypatch.setattr(slices, "SLICE_ROWS", 2)
    real = slices.Workers.receive

    def fail_on_second(self, k):
        if k == 1:
            raise RuntimeError("worker lost")
        return real(self, k)

    monkeypatch.setattr(slices.Workers, "receive", fail_on_second)
    with pytest.raises(RuntimeError, match="worker lost"):
        export.export(tmp_path, fmt="parquet", engine=engine, workers=2)
    assert not list(tmp_path.glob("*/support/**/data.*"))
    assert not list((tmp_path / ".partial").iterdir())
    assert export.watermark(export.default_feed("parquet", ""), "support", engine=engine) is None


# --- feeds ------------------------------------------------------------------------------


def _decide_n(engine, start, n):
    for i in range(start, start + n):
        ingest.submit(item(i), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)


def _ids(results):
    return [json.loads(x)["item_id"] for r in results for x in r.path.read_text().splitlines()]


def test_feeds_do_not_take_decisions_from_each_other(engine, queue, tmp_path, fake_clock):
    """A reviewer's export into the default folder, and any ad-hoc export, leave the
    team's incremental feed in another folder untouched (the first-day defect): the
    default feed refuses a second folder, with what to do, and a named feed has its own
    watermark."""
    _decide_n(engine, 0, 4)
    fake_clock.advance(2)
    reviewer = export.export(tmp_path / "data-exports", fmt="parquet", engine=engine)
    export.export(
        tmp_path / "data-exports", fmt="parquet", since=datetime(2000, 1, 1, tzinfo=UTC), engine=engine
    )
    export.export(tmp_path / "srv", fmt="parquet", week_spec="2026-W47", engine=engine)
    with pytest.raises(ValidationFailed, match="--feed NAME"):
        export.export(tmp_path / "srv", fmt="parquet", engine=engine)
    [cron] = export.export(tmp_path / "srv", fmt="parquet", feed="cron", engine=engine)
    assert reviewer[0].rows == 4 and cron.rows == 4
    # Named feeds, even into one folder, each keep their own watermark.
    [a] = export.export(tmp_path / "shared", fmt="jsonl", feed="team-a", engine=engine)
    [b] = export.export(tmp_path / "shared", fmt="jsonl", feed="team-b", engine=engine)
    assert a.rows == b.rows == 4 and a.feed == "team-a"
    _decide_n(engine, 4, 2)
    fake_clock.advance(2)
    [a2] = export.export(tmp_path / "shared", fmt="jsonl", feed="team-a", engine=engine)
    assert a2.rows == 2 and set(_ids([a2])).isdisjoint(_ids([a]))


def test_ad_hoc_exports_move_no_watermark(engine, queue, tmp_path, fake_clock):
    _decide_n(engine, 0, 3)
    fake_clock.advance(2)
    export.export(tmp_path, fmt="csv", since=datetime(2000, 1, 1, tzinfo=UTC), engine=engine)
    wk = datetime.now(UTC).isocalendar()
    export.export(tmp_path, fmt="csv", week_spec=f"{wk.year}-W{wk.week:02d}", engine=engine)
    assert export.watermark(export.default_feed("csv", ""), "support", engine=engine) is None
    with pytest.raises(Exception, match="feed"):
        export.export(tmp_path, fmt="csv", week_spec="2026-W01", feed="x", engine=engine)


def test_a_feed_keeps_its_shape(engine, queue, tmp_path):
    from reviewqueue.errors import ValidationFailed

    export.export(tmp_path, fmt="jsonl", feed="nightly", engine=engine)
    with pytest.raises(ValidationFailed, match="nightly"):
        export.export(tmp_path, fmt="parquet", feed="nightly", engine=engine)


def test_a_second_run_of_a_feed_at_once_exports_nothing_twice(
    engine, queue, tmp_path, fake_clock, monkeypatch
):
    """Two runs of one feed started together: the one that commits second finds the
    watermark moved and gives up, leaving no file."""
    from reviewqueue.errors import Conflict

    _decide_n(engine, 0, 3)
    fake_clock.advance(2)
    real_record = run._record

    def other_run_first(*args, **kwargs):
        monkeypatch.setattr(run, "_record", real_record)
        export.export(tmp_path, fmt="jsonl", feed="f", engine=engine)  # commits in between
        return real_record(*args, **kwargs)

    monkeypatch.setattr(run, "_record", other_run_first)
    with pytest.raises(Conflict, match="meanwhile"):
        export.export(tmp_path, fmt="jsonl", feed="f", engine=engine)
    files = list(tmp_path.glob("jsonl/support/feeds/f/*/data.jsonl"))
    assert len(files) == 1 and len(_ids([type("R", (), {"path": files[0]})])) == 3
    assert not list((tmp_path / ".partial").iterdir())


def test_layout_is_one_dataset_per_kind_of_export(engine, decided, tmp_path):
    """A feed and a week export into the same OUT: each folder the README reads is one
    dataset, with every item once (they once shared a folder that held 179 items twice)."""
    import pyarrow.parquet as pq

    [p] = export.export(tmp_path, fmt="parquet", engine=engine)
    [j] = export.export(tmp_path, fmt="jsonl", engine=engine)
    [w] = export.export(tmp_path, fmt="parquet", week_spec=_this_week(), engine=engine)
    [r] = export.export(tmp_path, fmt="parquet", since=datetime(2000, 1, 1, tzinfo=UTC), engine=engine)
    assert p.path.relative_to(tmp_path).parts[:4] == ("parquet", "support", "feeds", "parquet")
    assert j.path.relative_to(tmp_path).parts[:4] == ("jsonl", "support", "feeds", "jsonl")
    assert w.path.relative_to(tmp_path).parts[:3] == ("parquet", "support", "weeks")
    assert r.path.relative_to(tmp_path).parts[:3] == ("parquet", "support", "ranges")
    assert p.manifest.name == export.MANIFEST == "_manifest.json"
    for folder in ("feeds/parquet", "weeks"):
        df = pd.read_parquet(tmp_path / "parquet" / "support" / folder)  # the manifests are skipped
        assert len(df) == 5 and df["item_id"].is_unique, folder
    assert pq.read_table(tmp_path / "parquet" / "support" / "weeks").num_rows == 5


# --- crashes ----------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["before_commit", "after_commit", "after_rename"])
def test_killed_at_any_step_the_next_run_neither_repeats_nor_skips(
    engine, queue, tmp_path, db_url, fake_clock, step
):
    """kill -9 at each step of recording a run: the next run (or a recovery) leaves every
    decision in exactly one file, and every recorded run's file in place."""
    _decide_n(engine, 0, 5)
    fake_clock.advance(2)
    script = f"from reviewqueue import export\nexport.export({str(tmp_path)!r}, fmt='jsonl', workers=1)\n"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "REVIEWQUEUE_DATABASE_URL": db_url, "REVIEWQUEUE_EXPORT_CRASH_AT": step},
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Until its pending_until the killed run is left alone: its process might be on
    # another host, still moving the file; the database says how long to wait.
    assert export.recover(engine) == []
    fake_clock.advance(run.PENDING.total_seconds() + 1)
    _decide_n(engine, 5, 3)
    fake_clock.advance(2)
    export.export(tmp_path, fmt="jsonl", engine=engine)
    files = sorted(tmp_path.glob("jsonl/support/feeds/jsonl/*/data.jsonl"))
    ids = [json.loads(x)["item_id"] for f in files for x in f.read_text().splitlines()]
    assert len(ids) == 8 == len(set(ids)), (step, files)
    from reviewqueue import store

    with store.read(engine) as tx:
        recorded = tx.session.scalars(select(ExportRun)).all()
    assert all(r.pending_path is None and os.path.exists(r.path) for r in recorded)
    assert sorted(str(f) for f in files) == sorted(r.path for r in recorded)
    assert not [p for p in (tmp_path / ".partial").iterdir()]


def test_export_workers_die_with_their_parent(engine, queue, tmp_path, db_url, fake_clock):
    _decide_n(engine, 0, 6)
    fake_clock.advance(2)
    script = (
        "import os, sys, time\n"
        "from reviewqueue.export import slices\n"
        "slices.SLICE_ROWS = 2\n"
        "real = slices.write_slice\n"
        "def slow(*a, **k):\n"
        "    time.sleep(60)\n"
        "slices.Workers.send_real = slices.Workers.send\n"
        "def send(self, k, task):\n"
        "    self.send_real(k, task)\n"
        "    print(' '.join(str(p.pid) for p in self._procs), flush=True)\n"
        "    time.sleep(60)\n"
        "slices.Workers.send = send\n"
        "from reviewqueue import export\n"
        f"export.export({str(tmp_path)!r}, fmt='jsonl', workers=2, week_spec='{_this_week()}')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "REVIEWQUEUE_DATABASE_URL": db_url},
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert pids
    proc.kill()
    proc.wait(timeout=30)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    assert not any(_running(p) for p in pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _this_week() -> str:
    wk = datetime.now(UTC).isocalendar()
    return f"{wk.year}-W{wk.week:02d}"


def test_a_label_correction_exports_a_consistent_reference(engine, label_queue, tmp_path, fake_clock):
    """Changing a ticket's label from other to billing: the reference is billing in every
    column, and the edit distance counts the change."""
    ingest.submit(
        {
            "queue": "tickets",
            "input": "charged twice",
            "output": "other",
            "predicted_label": "other",
            "confidence": 0.1,
            "external_id": "t1",
        },
        engine=engine,
    )
    held = review.claim_next("tickets", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "correct", "final_label": "billing"}, engine=engine)
    fake_clock.advance(2)  # past PostgreSQL's one-second settling margin
    [r] = export.export(tmp_path, fmt="jsonl", since=datetime(2000, 1, 1, tzinfo=UTC), engine=engine)
    [row] = [json.loads(x) for x in r.path.read_text().splitlines()]
    assert (row["output"], row["reference_output"], row["reference_label"], row["edit_distance"]) == (
        "other",
        "billing",
        "billing",
        1,
    )


def test_a_feed_takes_an_item_when_it_becomes_final_not_when_its_first_review_was_written(
    engine, tmp_path, fake_clock
):
    """Two reviews per item: the agreed decision is the first one, written before a feed
    ran; the item becomes final after. The next run of the feed must take it (found by
    three nodes under load: the feed skipped such items for good)."""
    from reviewqueue import queues

    queues.create("pair", {"threshold": 0.8, "audit_rate": 0.0, "reviews_required": 2}, engine=engine)
    r = ingest.submit(item(1, queue="pair"), engine=engine)
    held = review.claim_next("pair", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(5)
    [first] = export.export(tmp_path, fmt="jsonl", queues=["pair"], engine=engine)
    assert first.rows == 0  # not final yet
    held = review.claim_next("pair", "bob", engine=engine)
    review.decide(held.id, "bob", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(5)
    [second] = export.export(tmp_path, fmt="jsonl", queues=["pair"], engine=engine)
    [row] = [json.loads(x) for x in second.path.read_text().splitlines()]
    assert row["item_id"] == r.id and [x["reviewer"] for x in row["reviews"]] == ["ann", "bob"]
