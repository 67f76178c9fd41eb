"""Governance (#12): an audit trail nobody can quietly edit, PII that never reaches the
database, retention, and erasure of one subject's data everywhere it was stored."""

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from reviewqueue import audit, cli, export, ingest, items, queues, retention, review, store, webhooks
from reviewqueue.errors import ValidationFailed
from reviewqueue.redaction import Redactor, check_rules

from .conftest import item, seal_now


@pytest.fixture
def private_webhooks(monkeypatch):
    """Receivers on this machine (127.0.0.1), which webhooks refuse unless allowed."""
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")


# --- the audit trail ------------------------------------------------------------------------


def _activity(engine, n=3, start=0):
    for i in range(start, start + n):
        ingest.submit(item(i), engine=engine)
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)


def test_sealed_events_verify_and_later_ones_are_counted(engine, queue, fake_clock):
    _activity(engine)
    fake_clock.advance(2)  # PostgreSQL's settled bound trails "now" by a second
    first = seal_now(engine)
    assert first is not None and first.events >= 10
    assert audit.seal(engine=engine) is None  # nothing new
    _activity(engine, 1, start=10)
    result = audit.verify(engine=engine)
    assert result.ok and result.seals == 1 and result.events == first.events and result.unsealed >= 3
    fake_clock.advance(2)
    second = seal_now(engine)
    again = audit.verify(engine=engine)
    assert again.ok and again.seals == 2 and again.head == second.chain != first.chain


@pytest.mark.parametrize(
    "tamper, found",
    [
        (
            "UPDATE events SET actor = 'mallory' WHERE kind = 'item.decided' AND id = (SELECT min(id) FROM events "
            "WHERE kind = 'item.decided')",
            "seal 1",
        ),
        ("DELETE FROM events WHERE id = (SELECT max(id) FROM events WHERE kind = 'item.claimed')", "seal 1"),
        (
            "INSERT INTO events (at, actor, kind, queue) SELECT min(at), 'mallory', 'queue.updated', 'support' "
            "FROM events",
            "does not carry the server key's MAC",
        ),
        (
            "UPDATE audit_seals SET chain = '0000000000000000000000000000000000000000000000000000000000000001'",
            "seal 1",
        ),
    ],
)
def test_an_edited_deleted_or_added_event_fails_verification(engine, queue, fake_clock, tamper, found):
    _activity(engine)
    fake_clock.advance(2)
    assert seal_now(engine) is not None
    assert audit.verify(engine=engine).ok
    with engine.begin() as conn:
        conn.execute(text(tamper))
    result = audit.verify(engine=engine)
    assert not result.ok and found in result.problem
    r = CliRunner().invoke(cli.app, ["audit", "verify"])
    assert r.exit_code != 0 and "FAILED" in str(r.exception)


def test_changes_are_events_with_real_actors(api, engine, queue, make_token):
    import getpass

    runner = CliRunner()
    assert runner.invoke(cli.app, ["queue", "update", "support", "--threshold", "0.6"]).exit_code == 0
    headers = make_token("admin", user="adam", name="admin-token")
    api.put("/v1/queues/support", json={"threshold": 0.65}, headers=headers)
    _, _ = webhooks.add("support", "http://93.184.215.14/hook", actor="adam", engine=engine)
    updates = audit.events(audit.EventFilter(kind="queue.updated"), engine=engine)
    assert [e.actor for e in updates] == [f"cli:{getpass.getuser()}", "adam (token:admin-token)"]
    kinds = {e.kind for e in audit.events(audit.EventFilter(), limit=1000, engine=engine)}
    assert {"token.created", "webhook.added", "queue.created", "queue.updated"} <= kinds


def test_the_events_route_pages_for_admins_only(api, engine, queue, make_token):
    _activity(engine)
    admin = make_token("admin")
    r = api.get("/v1/events", params={"limit": 4}, headers=admin)
    page = r.json()
    assert r.status_code == 200 and len(page["events"]) == 4 and page["next_cursor"]
    rest = api.get("/v1/events", params={"limit": 1000, "cursor": page["next_cursor"]}, headers=admin).json()
    ids = [e["id"] for e in page["events"] + rest["events"]]
    assert ids == sorted(set(ids)) and rest["next_cursor"] is None
    decided = api.get("/v1/events", params={"kind": "item.decided", "actor": "ann"}, headers=admin).json()
    assert len(decided["events"]) == 3
    assert api.get("/v1/events", headers=make_token("read")).status_code == 403


def test_audit_cli_lists_and_filters(engine, queue):
    _activity(engine)
    r = CliRunner().invoke(cli.app, ["audit", "--kind", "item.", "--actor", "ann", "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert {x["kind"] for x in lines} == {"item.claimed", "item.decided"} and len(lines) == 6


# --- PII redaction ----------------------------------------------------------------------------

PII = {
    "EMAIL": "jane.doe@example.com",
    "PHONE": "+1 415-555-0132",
    "CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "IP": "203.0.113.77",
    "SSN": "123-45-6789",
    "ORDER": "ORD-553201",
}
RULES = ["email", "phone", "card", "iban", "ip", "ssn", {"name": "ORDER", "pattern": r"ORD-\d{6}"}]


def test_detectors_check_more_than_the_shape():
    r, c = Redactor(RULES), Counter()
    assert (
        r.text("card 4111 1111 1111 1112 is not Luhn-valid", c)
        == "card 4111 1111 1111 1112 is not Luhn-valid"
    )
    assert r.text("IBAN GB82 WEST 1234 5698 7654 33 fails mod-97", c).startswith("IBAN GB82")
    assert r.text("999.1.2.3 is no address", c).startswith("999.1.2.3")
    assert r.text("000-12-3456 is never issued", c).startswith("000-12-3456")
    assert r.text("call 555-0132 no", c) == "call 555-0132 no"  # too short to be a valid number
    assert not c
    assert r.text(" ".join(PII.values()), c) == " ".join(f"[{k}]" for k in PII)
    assert c == Counter(dict.fromkeys(PII, 1))


def test_rules_are_checked():
    for bad in (
        ["zipcode"],
        [{"name": "x", "pattern": "a"}],
        [{"name": "OK", "pattern": "("}],
        ["email", "email"],
    ):
        with pytest.raises(ValidationFailed):
            check_rules(bad)


def _pii_item(n: int) -> dict:
    text = "Contact " + ", ".join(PII.values())
    return {
        "queue": "support",
        "external_id": f"p{n}",
        "input": text,
        "output": {"reply": text, "to": PII["EMAIL"]},
        "confidence": 0.1,
        "context": [{"title": PII["EMAIL"], "text": text, "url": "https://x.example/"}],
        "metadata": {PII["EMAIL"]: PII["PHONE"], "ip": PII["IP"]},
    }


def test_no_original_value_is_stored_exported_sent_or_logged(
    private_webhooks, api, engine, queue, make_token, db_url, tmp_path, fake_clock, caplog
):
    caplog.set_level(logging.DEBUG)
    queues.update("support", {"redaction": RULES}, engine=engine)
    webhooks.add("support", "http://127.0.0.1:9/hook", engine=engine)
    headers = make_token("ingest")
    assert api.post("/v1/items", json=_pii_item(1), headers=headers).status_code == 201
    assert (
        api.post("/v1/items/batch", json={"items": [_pii_item(2), _pii_item(3)]}, headers=headers).status_code
        == 200
    )
    ingest.submit_many([_pii_item(4)], engine=engine)
    stored = items.get_by_external_id("support", "p1", engine=engine)
    assert stored.redactions == {"EMAIL": 6, "PHONE": 4, "CARD": 3, "IBAN": 3, "IP": 4, "SSN": 3, "ORDER": 3}
    assert "[EMAIL]" in stored.input and stored.metadata == {"[EMAIL]": "[PHONE]", "ip": "[IP]"}
    for _ in range(4):  # reviewed, notified (outbox bodies) and exported
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "correct", "final_output": "fixed reply"}, engine=engine)
    webhooks.deliver_due(engine=engine)
    fake_clock.advance(2)
    files = [
        r.path
        for fmt in ("jsonl", "csv", "parquet", "chat-jsonl")
        for r in export.export(tmp_path, fmt=fmt, engine=engine)
    ]
    originals = [v.encode() for v in PII.values()] + [b"4111111111111111", b"jane.doe"]
    for path in files:
        content = Path(path).read_bytes()
        assert not [o for o in originals if o in content], path
    assert not [o for o in originals if o.decode() in caplog.text]
    _assert_not_in_database(engine, db_url, originals)


def _assert_not_in_database(engine, db_url, originals):
    if engine.dialect.name == "sqlite":
        store.dispose_engines()  # write the WAL back into the file, then read the file's bytes
        db_file = Path(db_url.removeprefix("sqlite:///"))
        content = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
        assert not [o for o in originals if o in content]
        return
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            columns = [c["name"] for c in inspect(conn).get_columns(table)]
            for column in columns:
                for o in originals:
                    hit = conn.execute(
                        text(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE :p'),
                        {"p": f"%{o.decode()}%"},
                    ).scalar()
                    assert hit == 0, (table, column, o)


# --- retention and erasure -----------------------------------------------------------------------


def test_retention_purges_content_and_keeps_the_numbers(engine, queue, fake_clock):
    queues.update("support", {"retention_days": 30}, engine=engine)
    _activity(engine, 2)
    fake_clock.advance(31 * 86400)
    ingest.submit(item(9), engine=engine)  # recent: kept
    r = CliRunner().invoke(cli.app, ["purge"])
    assert r.exit_code == 0 and "support: 2 item(s) purged" in r.output, r.output
    old = items.get_by_external_id("support", "ext-0", engine=engine)
    assert (old.input, old.output, old.context, old.metadata) == (None, None, [], {})
    assert old.status == "approved" and old.confidence == 0.5 and old.decision.verdict == "approve"
    assert items.get_by_external_id("support", "ext-9", engine=engine).input == "question 9"
    purged = audit.events(audit.EventFilter(kind="items.purged"), engine=engine)
    assert purged[0].actor == "retention" and purged[0].after["count"] == 2
    assert retention.purge(engine=engine) == {}  # nothing left to do


def test_erasure_removes_one_subjects_content_everywhere(
    private_webhooks, api, engine, queue, make_token, tmp_path, fake_clock, db_url
):
    secret = "Subject Person, 77 Secret Lane"
    webhooks.add("support", "http://127.0.0.1:9/hook", engine=engine)
    ingest.submit({**item(1), "input": secret, "output": f"Dear {secret}"}, engine=engine)
    ingest.submit(item(2), engine=engine)
    for _ in range(2):
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(
            held.id,
            "ann",
            {"verdict": "correct", "final_output": f"Hello {secret}", "comment": secret},
            engine=engine,
        )
    fake_clock.advance(2)
    [run] = export.export(tmp_path, fmt="jsonl", engine=engine)
    subject = items.get_by_external_id("support", "ext-1", engine=engine)
    r = api.delete(f"/v1/items/{subject.id}", headers=make_token("admin"))
    assert r.status_code == 200 and r.json() == {"id": subject.id, "erased": True}
    erased = items.get(subject.id, engine=engine)
    assert (
        erased.input is None
        and erased.external_id.startswith("erased:")
        and erased.decision.final_output is None
    )
    assert (
        items.get_by_external_id("support", "ext-2", engine=engine).decision.final_output == f"Hello {secret}"
    )
    manifest = json.loads(run.manifest.read_text())
    assert [e["item_id"] for e in manifest["erasures"]] == [subject.id]
    [event] = audit.events(audit.EventFilter(kind="item.erased"), engine=engine)
    assert secret not in json.dumps(audit.as_dict(event))
    with engine.connect() as conn:
        bodies = conn.execute(
            text("SELECT body FROM webhook_deliveries WHERE item_id = :i"), {"i": subject.id}
        )
        assert all(secret not in b for (b,) in bodies)
    # The other item still holds the text; erase it too by its external id, then none is left.
    r = CliRunner().invoke(
        cli.app, ["erase", "--queue", "support", "--external-id", "ext-2", "--reason", "DSR-12"]
    )
    assert r.exit_code == 0, r.output
    _assert_not_in_database(engine, db_url, [secret.encode()])
