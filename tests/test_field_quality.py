"""Per-field quality of structured outputs (field_quality.py): a simulation with known
truth (200 invoices x 20 fields, calibrated confidences, a reviewer who corrects exactly
the wrong fields) whose per-field interval for the error of confident fields covers the
truth for at least 18 of 20 fields; the API and the CLI show it."""

from __future__ import annotations

import random

from typer.testing import CliRunner

from reviewqueue import cli, field_quality, ingest, queues, review

FIELDS = [f"f{k:02d}" for k in range(20)]
SCHEMA = {"type": "object", "properties": {f: {"type": "string"} for f in FIELDS}}


def simulate(engine, n=200, seed=11):
    """Each field is right with probability equal to its confidence (calibrated); the
    reviewer changes exactly the wrong ones. Returns the true error of confident fields."""
    queues.create("invoices", {"threshold": 0.8, "audit_rate": 0.0, "output_schema": SCHEMA}, engine=engine)
    rng = random.Random(seed)
    truth = {}
    posted = []
    for i in range(n):
        conf = {f: round(rng.uniform(0.6, 1.0), 4) for f in FIELDS}
        wrong = {f for f in FIELDS if rng.random() > conf[f]}
        posted.append(({f: f"value {i}" for f in FIELDS}, conf, wrong))
        for f in FIELDS:
            if conf[f] >= 0.8:
                truth.setdefault(f, []).append(1 - conf[f])  # its expected error
    ingest.submit_many(
        [
            {
                "queue": "invoices",
                "external_id": f"inv-{i}",
                "input": "scan",
                "output": out,
                "field_confidence": conf,
            }
            for i, (out, conf, _) in enumerate(posted)
        ],
        engine=engine,
    )
    wrong_of = {f"inv-{i}": w for i, (_, _, w) in enumerate(posted)}
    while (held := review.claim_next("invoices", "ann", engine=engine)) is not None:
        wrong = wrong_of[held.external_id]
        if wrong:
            fixed = {**held.output, **{f: "fixed" for f in wrong}}
            review.decide(held.id, "ann", {"verdict": "correct", "final_output": fixed}, engine=engine)
        else:
            review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    return {f: sum(v) / len(v) for f, v in truth.items()}


def test_the_error_of_confident_fields_is_covered(engine):
    truth = simulate(engine)
    rows = {r.path: r for r in field_quality.report("invoices", target_error=0.2, engine=engine)}
    assert set(rows) == set(FIELDS)
    covered = [
        f for f in FIELDS if rows[f].auto_accepted_error.low <= truth[f] <= rows[f].auto_accepted_error.high
    ]
    print(f"\n{len(covered)} of 20 fields covered")
    assert len(covered) >= 18
    # Calibrated fields: accuracy near the mean confidence (0.8), reliability rising with it.
    for r in rows.values():
        assert 0.7 <= r.accuracy.estimate <= 0.9 and r.reviewed == 200
        assert r.reliability[0].accuracy < r.reliability[-1].accuracy
        # Expected error above t is (1 - t) / 2: a 20% target is met from about 0.6, shown a bit above.
        assert r.recommendation is not None and 0.5 <= r.recommendation <= 0.95


def test_api_and_cli(api, engine, make_token):
    simulate(engine, n=40)
    resp = api.get("/v1/queues/invoices/quality/fields?target_error=0.2", headers=make_token("read"))
    assert resp.status_code == 200 and len(resp.json()) == 20 and resp.json()[0]["path"] == "f00"
    out = CliRunner().invoke(cli.app, ["quality", "invoices", "--fields"])
    assert out.exit_code == 0, out.output
    assert "f19" in out.output and "error when confident" in out.output
