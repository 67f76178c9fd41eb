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

from reviewqueue import export, ingest, review, textdiff
from reviewqueue.export import COLUMNS

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
    assert manifest["sha256"] == export._sha256(r.path) and manifest["schema_version"] == 1
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
        assert r.rows == 0 and json.loads(r.manifest.read_text())["files"][fmt]["rows"] == 0
    base = tmp_path / "support" / "2020-W01"
    assert pq.read_table(base / "data.parquet").schema.names == COLUMNS
    assert (base / "data.csv").read_text().strip() == ",".join(COLUMNS)
    assert (base / "data.jsonl").read_text() == ""


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
    rows = [json.loads(x) for x in r.path.with_name("data.jsonl").read_text().splitlines()]
    assert [x["external_id"] for x in rows] == ["ext-1", "ext-2"]
    assert rows[0]["decided_at"].startswith("2026-11-16T00:00:00.")


def test_three_incremental_runs_give_each_decision_once(engine, queue, tmp_path, fake_clock):
    seen = []
    n = 0
    for run in range(3):
        for _ in range(4):
            ingest.submit(item(n), engine=engine)
            held = review.claim_next("support", "ann", engine=engine)
            review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
            n += 1
        fake_clock.advance(2)  # PostgreSQL's settled bound trails "now" by a second
        [r] = export.export(tmp_path / f"run{run}", fmt="jsonl", engine=engine)
        seen += [json.loads(x)["item_id"] for x in r.path.read_text().splitlines()]
    assert len(seen) == 12 == len(set(seen))
    [empty] = export.export(tmp_path / "run4", fmt="jsonl", engine=engine)
    assert empty.rows == 0


def test_decision_landing_during_export_is_not_lost(engine, queue, tmp_path, fake_clock, monkeypatch):
    """A decision committed while the export reads is after the bound: next run has it."""
    ingest.submit_many([item(1), item(2)], engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(2)
    real_rows = export._rows

    def rows_then_decide(*args, **kwargs):
        yield from real_rows(*args, **kwargs)
        other = review.claim_next("support", "bob", engine=engine)
        review.decide(other.id, "bob", {"verdict": "approve"}, engine=engine)

    monkeypatch.setattr(export, "_rows", rows_then_decide)
    [first] = export.export(tmp_path / "a", fmt="jsonl", engine=engine)
    monkeypatch.setattr(export, "_rows", real_rows)
    fake_clock.advance(2)
    [second] = export.export(tmp_path / "b", fmt="jsonl", engine=engine)
    assert (first.rows, second.rows) == (1, 1)


def test_failed_export_leaves_no_file_and_keeps_watermark(engine, decided, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        yield [export._row(r) for r in []]
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_rows", boom)
    with pytest.raises(RuntimeError):
        export.export(tmp_path, fmt="parquet", engine=engine)
    assert not list(tmp_path.glob("support/**/data.*"))
    assert not list((tmp_path / ".partial").iterdir())
    assert export.watermark("support", "parquet", "", engine=engine) is None


def test_killed_export_leaves_no_file(engine, queue, tmp_path, db_url, fake_clock):
    ingest.submit_many([item(i) for i in range(3000)], engine=engine)
    for _ in range(3000):
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    script = (
        "import time, sys\n"
        "from reviewqueue import export\n"
        "real = export._rows\n"
        "def slow(*a, **k):\n"
        "    for chunk in real(*a, **k):\n"
        "        yield chunk[:10]\n"
        "        print('chunk', flush=True)\n"
        "        time.sleep(30)\n"
        "export._rows = slow\n"
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
    assert not list(tmp_path.glob("support/**/data.*"))
    assert export.watermark("support", "jsonl", "", engine=engine) is None
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
    assert export._arrow_text(pa.array(raw, type=pa.string())).to_pylist() == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=20), st.booleans())
def test_arrow_text_property(texts, ascii_only):
    import pyarrow as pa

    raw = [json.dumps(t, ensure_ascii=ascii_only) for t in texts]
    assert export._arrow_text(pa.array(raw, type=pa.string())).to_pylist() == texts


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "chat-jsonl"])
def test_parallel_slices_write_the_same_file(engine, decided, tmp_path, monkeypatch, fmt):
    """Worker processes converting slices of two decisions each give the same data as
    one process reading it all."""
    monkeypatch.setattr(export, "SLICE_ROWS", 2)
    wk = datetime.now(UTC).isocalendar()
    spec = f"{wk.year}-W{wk.week:02d}"
    assert len(export._slices(engine, "support", export.week(spec))) == 3
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
    monkeypatch.setattr(export, "SLICE_ROWS", 2)
    with engine.begin() as conn:
        conn.execute(
            export.Review.__table__.update().values(created_at=datetime(2026, 11, 18, 12, tzinfo=UTC))
        )
    period = export.week("2026-W47")
    slices = export._slices(engine, "support", period)
    assert slices[0][0] == period.since and slices[-1][1] == period.until
    assert all(a < b for a, b in slices) and all(
        x[1] == y[0] for x, y in zip(slices, slices[1:], strict=False)
    )


def test_worker_errors_reach_the_caller():
    pool = export._Workers(1)
    try:
        pool.send(
            0,
            {
                "url": "sqlite:///nowhere/x.db",
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
    monkeypatch.setattr(export, "SLICE_ROWS", 2)
    real = export._Workers.receive

    def fail_on_second(self, k):
        if k == 1:
            raise RuntimeError("worker lost")
        return real(self, k)

    monkeypatch.setattr(export._Workers, "receive", fail_on_second)
    with pytest.raises(RuntimeError, match="worker lost"):
        export.export(tmp_path, fmt="parquet", engine=engine, workers=2)
    assert not list(tmp_path.glob("support/*/data.*"))
    assert not list((tmp_path / ".partial").iterdir())
    assert export.watermark("support", "parquet", "", engine=engine) is None
