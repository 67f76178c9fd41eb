"""Each exported row's ``reviews`` holds exactly that item's decisions, whatever the mix:
random queues with two or three reviews per item, agreements, disputes settled by a
lead, undone decisions; every format, both databases. (The column once listed every
decision of every item in the period on each row.)"""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reviewqueue import export, ingest, items, queues, review, users
from reviewqueue.errors import Conflict
from reviewqueue.vocab import DECIDED

FIELDS = ("reviewer", "verdict", "final_output", "final_label", "reason", "comment", "adjudication")


def _rows(result) -> dict[str, dict]:
    data = result.path.read_bytes()
    if result.format == "parquet":
        table = pq.read_table(result.path).to_pylist()
    elif result.format == "csv":
        table = list(csv.DictReader(io.StringIO(data.decode())))
    else:
        table = [json.loads(line) for line in data.decode().splitlines()]
    out = {}
    for row in table:
        reviews = row["reviews"]
        out[row["item_id"]] = json.loads(reviews) if isinstance(reviews, str) else reviews
    return out


def _through_the_api(item_id: str, engine) -> list[dict]:
    """The item's decisions as GET /v1/items/{id} gives them (not undone), oldest first."""
    found = items.get(item_id, engine=engine)
    return [
        {f: getattr(r, f) for f in FIELDS}
        for r in sorted(found.reviews, key=lambda r: r.id)
        if r.undone_at is None
    ]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(seed=st.integers(0, 2**32 - 1), required=st.sampled_from([2, 3]), n=st.integers(2, 6))
def _check(engine, tmp_path, counter, seed, required, n):
    rng = random.Random(seed)
    counter[0] += 1
    name = f"q{counter[0]}"
    queues.create(
        name,
        {"threshold": 0.8, "audit_rate": 0.0, "reviews_required": required, "reject_reasons": ["bad", "off"]},
        engine=engine,
    )
    ids = [
        ingest.submit(
            {"queue": name, "input": f"in {i}", "output": f"out {i}", "confidence": 0.2}, engine=engine
        ).id
        for i in range(n)
    ]
    people = [f"r{k}" for k in range(required)]
    for _ in range(n * required):
        for who in rng.sample(people, len(people)):
            held = review.claim_next(name, who, engine=engine)
            if held is None:
                continue
            choice = rng.choice(["approve", "reject", "correct"])
            decision = {
                "approve": {"verdict": "approve"},
                "reject": {
                    "verdict": "reject",
                    "reason": rng.choice(["bad", "off"]),
                    "comment": f"c{rng.random()}",
                },
                "correct": {"verdict": "correct", "final_output": f"fixed {rng.randint(0, 1)}"},
            }[choice]
            done = review.decide(held.id, who, decision, engine=engine)
            if rng.random() < 0.2:  # a change of mind: undone, decided again
                try:
                    review.undo(done.id, who, engine=engine)
                    review.decide(held.id, who, {"verdict": "approve"}, engine=engine)
                except Conflict:  # the item was final already: undo is not allowed then
                    pass
    for disputed in review.disputes(name, engine=engine):
        pick = rng.choice([r.id for r in disputed.reviews if r.undone_at is None])
        review.adjudicate(disputed.id, "lead", pick=pick, engine=engine)
    finals = [i for i in ids if items.get(i, engine=engine).status in DECIDED]
    since = datetime(2000, 1, 1, tzinfo=UTC)
    for fmt in ("jsonl", "csv", "parquet"):
        [result] = export.export(
            tmp_path / f"out{counter[0]}",
            fmt=fmt,
            queues=[name],
            since=since,
            until=datetime(2100, 1, 1, tzinfo=UTC),
            engine=engine,
        )
        rows = _rows(result)
        assert sorted(rows) == sorted(finals), fmt
        for item_id, listed in rows.items():
            got = [{f: r[f] for f in FIELDS} for r in listed]
            assert got == _through_the_api(item_id, engine), (fmt, item_id)


def test_each_row_lists_exactly_its_own_decisions(engine, tmp_path):
    users.add("lead", role="lead", password="password-123", engine=engine)
    _check(engine, tmp_path, [0])
