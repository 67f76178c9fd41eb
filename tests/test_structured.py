"""Structured outputs (structured.py), on SQLite and PostgreSQL: schema validation at
ingest (bad JSON shapes, wrong types, unknown paths in field_confidence), per-field
routing and flagged fields, a correction that breaks the schema refused with its path,
and changed_fields recorded; over the API too."""

from __future__ import annotations

import pytest

from reviewqueue import ingest, items, queues, review
from reviewqueue.errors import ValidationFailed
from reviewqueue.structured import changed, leaves, parse_path

INVOICE = {
    "type": "object",
    "required": ["vendor", "total", "line_items"],
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"enum": ["EUR", "USD"]},
        "paid": {"type": "boolean"},
        "line_items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["description", "amount"],
                "properties": {"description": {"type": "string"}, "amount": {"type": "number"}},
            },
        },
    },
    "additionalProperties": False,
}

OUTPUT = {
    "vendor": "ACME GmbH",
    "total": 119.0,
    "currency": "EUR",
    "paid": False,
    "line_items": [{"description": "anvil", "amount": 100.0}, {"description": "VAT", "amount": 19.0}],
}


@pytest.fixture
def invoices(engine):
    return queues.create(
        "invoices",
        {
            "threshold": 0.8,
            "audit_rate": 0.0,
            "output_schema": INVOICE,
            "field_thresholds": {"total": 0.95},
        },
        engine=engine,
    )


def post(engine, n, output=OUTPUT, **fields):
    return ingest.submit(
        {"queue": "invoices", "external_id": f"inv-{n}", "input": "scan.pdf", "output": output, **fields},
        engine=engine,
    )


def test_paths():
    assert parse_path("line_items[0].amount") == ["line_items", 0, "amount"]
    assert parse_path("total") == ["total"]
    for bad in ("", "a..b", "[0]", "a[x]", "a.", ".a"):
        with pytest.raises(ValueError):
            parse_path(bad)
    assert leaves({"a": [1, {"b": 2}], "c": {}}) == {"a[0]": 1, "a[1].b": 2, "c": {}}
    assert changed({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3], "c": 0}) == ["b[1]", "c"]
    assert changed({"x": [0] * 11}, {"x": [1] * 11})[:3] == ["x[0]", "x[1]", "x[2]"]  # numbers, not text


def test_a_queue_schema_must_be_a_schema(engine):
    with pytest.raises(ValidationFailed, match="not a valid JSON Schema"):
        queues.create("bad", {"output_schema": {"type": "invoice"}}, engine=engine)
    with pytest.raises(ValidationFailed, match="field path"):
        queues.create("bad", {"field_thresholds": {"a..b": 0.5}}, engine=engine)


def test_outputs_that_break_the_schema_are_refused_with_the_path(engine, invoices):
    wrong_type = {**OUTPUT, "total": "119"}
    with pytest.raises(ValidationFailed) as e:
        post(engine, 1, wrong_type, confidence=0.9)
    assert (
        e.value.errors[0]["loc"] == ["output", "total"] and "not of type 'number'" in e.value.errors[0]["msg"]
    )
    nested = {**OUTPUT, "line_items": [{"description": "anvil"}]}
    with pytest.raises(ValidationFailed) as e:
        post(engine, 2, nested, confidence=0.9)
    assert e.value.errors[0]["loc"] == ["output", "line_items", 0] and "amount" in e.value.errors[0]["msg"]
    with pytest.raises(ValidationFailed, match="structured outputs"):
        post(engine, 3, "a text answer", confidence=0.9)
    with pytest.raises(ValidationFailed) as e:
        post(engine, 4, field_confidence={"totl": 0.9, "line_items[5].amount": 0.9})
    assert [x["loc"] for x in e.value.errors] == [
        ["field_confidence", "totl"],
        ["field_confidence", "line_items[5].amount"],
    ]
    with pytest.raises(ValidationFailed) as e:  # neither confidence nor field confidences
        post(engine, 5)
    assert e.value.errors[0]["loc"] == ["confidence"]
    # In a batch, each bad item is named; nothing is stored.
    with pytest.raises(ValidationFailed) as e:
        ingest.submit_many(
            [
                {"queue": "invoices", "input": "x", "output": OUTPUT, "confidence": 0.9},
                {"queue": "invoices", "input": "x", "output": {**OUTPUT, "paid": "no"}, "confidence": 0.9},
            ],
            engine=engine,
        )
    assert e.value.errors[0]["loc"] == ["items", 1, "output", "paid"]
    assert items.count(items.ItemFilter(), engine=engine) == 0


def test_fields_below_their_threshold_send_the_item_to_review(engine, invoices):
    confident = {"vendor": 0.99, "total": 0.97, "line_items[0].amount": 0.9, "line_items[1].amount": 0.99}
    auto = post(engine, 1, field_confidence=confident)
    assert auto.status == "auto_accepted"
    got = items.get(auto.id, engine=engine)
    assert got.confidence == 0.9 and got.flagged_fields == [] and got.field_confidence == confident
    # total's own threshold (0.95) flags it; line_items[0].amount falls under the queue's 0.8.
    shaky = post(engine, 2, field_confidence={**confident, "total": 0.93, "line_items[0].amount": 0.5})
    got = items.get(shaky.id, engine=engine)
    assert got.status == "pending" and got.route == "field_threshold"
    assert got.flagged_fields == ["total", "line_items[0].amount"] and got.confidence == 0.5


def test_a_correction_is_checked_against_the_schema_and_its_changes_recorded(engine, invoices):
    post(engine, 1, field_confidence={"total": 0.5, "vendor": 0.99})
    held = review.claim_next("invoices", "ann", engine=engine)
    broken = {**OUTPUT, "total": "one hundred"}
    with pytest.raises(ValidationFailed) as e:
        review.decide(held.id, "ann", {"verdict": "correct", "final_output": broken}, engine=engine)
    assert e.value.errors[0]["loc"] == ["final_output", "total"]
    fixed = {
        **OUTPUT,
        "total": 120.0,
        "line_items": [OUTPUT["line_items"][0], {"description": "VAT", "amount": 20.0}],
    }
    done = review.decide(held.id, "ann", {"verdict": "correct", "final_output": fixed}, engine=engine)
    assert done.changed_fields == ["line_items[1].amount", "total"]
    got = items.get(held.id, engine=engine)
    assert got.status == "corrected" and got.reviews[0].changed_fields == ["line_items[1].amount", "total"]


def test_over_the_api(api, engine, invoices, make_token):
    headers = make_token("ingest")
    resp = api.post(
        "/v1/items",
        json={
            "queue": "invoices",
            "input": "scan",
            "output": {**OUTPUT, "currency": "GBP"},
            "confidence": 0.9,
        },
        headers=headers,
    )
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["output", "currency"]
    resp = api.post(
        "/v1/items",
        json={"queue": "invoices", "input": "scan", "output": OUTPUT, "field_confidence": {"total": 0.4}},
        headers=headers,
    )
    assert resp.status_code == 201 and resp.json()["route"] == "field_threshold"
    got = api.get(f"/v1/items/{resp.json()['id']}", headers=make_token("read")).json()
    assert got["flagged_fields"] == ["total"] and got["confidence"] == 0.4
    schema = api.get("/v1/queues", headers=make_token("read")).json()[0]["output_schema"]
    assert schema == INVOICE


def test_field_level_export(engine, invoices, tmp_path):
    import json
    import time

    from reviewqueue import export

    post(engine, 1, field_confidence={"total": 0.5, "vendor": 0.99, "line_items[1].amount": 0.6}, priority=1)
    post(engine, 2, field_confidence={"total": 0.4})
    first = review.claim_next("invoices", "ann", engine=engine)
    fixed = {**OUTPUT, "total": 120.0, "vendor": "ACME AG"}
    review.decide(first.id, "ann", {"verdict": "correct", "final_output": fixed}, engine=engine)
    second = review.claim_next("invoices", "ann", engine=engine)
    review.decide(second.id, "ann", {"verdict": "approve"}, engine=engine)
    time.sleep(1.2)  # exports take what has settled
    [r] = export.export(tmp_path, fmt="fields-jsonl", queues=["invoices"], engine=engine)
    lines = [json.loads(x) for x in open(r.path, encoding="utf-8")]
    by = {(x["item_id"], x["path"]): x for x in lines}
    corrected_total = by[(first.id, "total")]
    assert (corrected_total["original"], corrected_total["corrected"]) == (119.0, 120.0)
    assert (
        corrected_total["flagged"] and corrected_total["changed"] and corrected_total["verdict"] == "correct"
    )
    assert corrected_total["confidence"] == 0.5
    vendor = by[(first.id, "vendor")]  # changed though not flagged
    assert not vendor["flagged"] and vendor["changed"] and vendor["corrected"] == "ACME AG"
    assert by[(first.id, "line_items[1].amount")]["changed"] is False
    approved = by[(second.id, "total")]
    assert approved["original"] == approved["corrected"] == 119.0 and approved["verdict"] == "approve"
    assert r.rows == len(lines) == 4  # total, line_items[1].amount, vendor; total
    [plain] = export.export(tmp_path / "plain", fmt="jsonl", queues=["invoices"], engine=engine)
    rows = [json.loads(x) for x in open(plain.path, encoding="utf-8")]
    assert sorted(len(x["flagged_fields"]) for x in rows) == [1, 2]
    assert {tuple(x["changed_fields"] or []) for x in rows} == {("total", "vendor"), ()}


def test_cli_sets_the_schema_and_field_thresholds(engine, tmp_path):
    import json

    from typer.testing import CliRunner

    from reviewqueue import cli

    schema = tmp_path / "invoice.schema.json"
    schema.write_text(json.dumps(INVOICE))
    runner = CliRunner()
    done = runner.invoke(
        cli.app,
        [
            "queue",
            "create",
            "invoices",
            "--output-schema-file",
            str(schema),
            "--field-threshold",
            "total=0.95",
        ],
    )
    assert done.exit_code == 0, done.output
    q = queues.get("invoices", engine=engine)
    assert q.output_schema == INVOICE and q.field_thresholds == {"total": 0.95}
    (tmp_path / "bad.json").write_text("{not json")
    bad = runner.invoke(
        cli.app, ["queue", "update", "invoices", "--output-schema-file", str(tmp_path / "bad.json")]
    )
    assert bad.exit_code != 0 and "is not JSON" in str(bad.exception)
