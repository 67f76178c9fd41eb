"""The attacker's findings of #21, each as it was found (the deliveries after removal and
erasure are in test_fleet.py, the lock-out in test_security.py, planted PII in
test_pii.py, tampering with the audit log in test_audit_tamper.py)."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from reviewqueue import egress, export, ingest, items, queues, retention, review, users
from reviewqueue.errors import ValidationFailed
from reviewqueue.vocab import Status

from .conftest import item

# --- GET /v1/events and a token's queue limit ---------------------------------------------


def test_a_queue_limited_admin_token_sees_only_its_queues_events(api, engine, queue, make_token):
    queues.create("other", {"threshold": 0.8}, engine=engine)
    ingest.submit(item(1), engine=engine)
    ingest.submit(item(2, queue="other"), engine=engine)
    users.add("someone", password="password-123", engine=engine)
    limited = make_token("admin", queues=["support"], user="adam", name="limited")
    events = api.get("/v1/events?limit=1000", headers=limited).json()["events"]
    assert events and {e["queue"] for e in events} == {"support"}  # no other queue, no account events
    r = api.get("/v1/events?queue=other", headers=limited)
    assert r.status_code == 403 and "other" in r.json()["detail"]
    everything = api.get("/v1/events?limit=1000", headers=make_token("admin", user="adam", name="all"))
    kinds = {e["kind"] for e in everything.json()["events"]}
    assert "user.created" in kinds and {e["queue"] for e in everything.json()["events"]} >= {
        "support",
        "other",
        None,
    }


# --- blind review through the API ------------------------------------------------------------


def test_a_reviewer_cannot_read_earlier_decisions_of_a_blind_queue(api, engine, make_token):
    queues.create("pair", {"threshold": 0.8, "reviews_required": 2}, engine=engine)
    r = ingest.submit(item(1, queue="pair"), engine=engine)
    held = review.claim_next("pair", "ann", engine=engine)
    review.decide(
        held.id, "ann", {"verdict": "reject", "reason": "other", "comment": "looks wrong"}, engine=engine
    )
    bob = make_token("review", user="bob", name="bob")
    assert api.post("/v1/queues/pair/claim", headers=bob).json()["id"] == r.id
    seen = api.get(f"/v1/items/{r.id}", headers=bob).json()
    assert seen["reviews"] == [] and seen["reviews_done"] == 1  # how many, not what
    ann = make_token("review", user="ann", name="ann")
    assert [rv["reviewer"] for rv in api.get(f"/v1/items/{r.id}", headers=ann).json()["reviews"]] == ["ann"]
    lead = make_token("read", user="adam", name="lead-read")
    users.update("adam", role="lead", engine=engine)
    assert len(api.get(f"/v1/items/{r.id}", headers=lead).json()["reviews"]) == 1
    app = make_token("read", name="app")
    assert len(api.get(f"/v1/items/{r.id}", headers=app).json()["reviews"]) == 1
    # Open queues show the earlier decisions, as the review page does.
    queues.update("pair", {"show_previous_reviews": True}, engine=engine)
    assert len(api.get(f"/v1/items/{r.id}", headers=bob).json()["reviews"]) == 1


# --- text a database cannot store, in query parameters ---------------------------------------


@pytest.mark.parametrize("param", ["model_version=%00", "predicted_label=%00", "model_version=a%00b"])
def test_a_nul_in_the_quality_filters_is_a_422(api, queue, make_token, param):
    r = api.get(f"/v1/queues/support/quality?{param}", headers=make_token("read"))
    assert r.status_code == 422 and "NUL" in str(r.json()["detail"])


@pytest.mark.parametrize("value", ["1700000000", "1.5", "-3"])
def test_a_bare_number_is_not_a_time(api, queue, make_token, value):
    headers = make_token("admin", user="adam")
    for path in ("/v1/items", "/v1/events", "/v1/queues/support/quality"):
        name = "updated_since" if path == "/v1/items" else "since"
        r = api.get(f"{path}?{name}={value}", headers=headers)
        assert r.status_code == 422 and "ISO 8601" in str(r.json()["detail"]), (path, r.text)


def test_a_whole_negative_float_priority_is_the_integer_the_schema_allows(api, queue, make_token):
    headers = make_token("ingest")
    r = api.post("/v1/items", json={**item(1), "priority": -1.0}, headers=headers)
    assert r.status_code == 201
    assert api.post("/v1/items", json={**item(2), "priority": 1.5}, headers=headers).status_code == 422


# --- webhook targets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "64:ff9b::7f00:1",
        "::ffff:127.0.0.1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ],
)
def test_ipv6_addresses_that_reach_internal_ipv4_ones_are_refused(address):
    import ipaddress

    assert not egress.public(ipaddress.ip_address(address))


def test_a_refused_webhook_target_does_not_say_what_it_resolves_to(monkeypatch):
    import socket

    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))],
    )
    with pytest.raises(ValidationFailed) as refused:
        egress.resolve("https://billing.internal/hook", allow_private=False)
    assert "10.1.2.3" not in str(refused.value) and "internal address" in str(refused.value)


# --- erasure ------------------------------------------------------------------------------


def test_an_erased_external_id_cannot_be_confirmed_by_guessing(engine, queue):
    r = ingest.submit(item(1, external_id="ticket-8812"), engine=engine)
    retention.erase(r.id, actor="dpo", engine=engine)
    stored = items.get(r.id, engine=engine).external_id
    guess = hashlib.sha256(b"support\0ticket-8812").hexdigest()[:48]
    assert stored.startswith("erased:") and guess not in stored and "ticket-8812" not in stored
    from reviewqueue import store

    assert stored == "erased:" + retention.erased_id("support", "ticket-8812", store.settings_of(engine))


def test_an_erased_pending_item_leaves_the_queue(engine, queue):
    waiting = ingest.submit(item(1), engine=engine)
    held_one = ingest.submit(item(2), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    assert held.id == waiting.id
    retention.erase(waiting.id, actor="dpo", engine=engine)
    retention.erase(held_one.id, actor="dpo", engine=engine)
    assert {items.get(i, engine=engine).status for i in (waiting.id, held_one.id)} == {Status.ERASED}
    assert review.claim_next("support", "bob", engine=engine) is None  # nothing empty to review
    assert items.get(waiting.id, engine=engine).lease_holder is None


def test_erasure_leaves_the_text_in_no_sqlite_file(engine, queue, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's files; PostgreSQL's columns are searched in test_pii.py")
    secret, note = "ERASE-ME-7c1e29", "NOTE-ME-55aa01"
    r = ingest.submit(
        item(1, input=secret * 200, output=f"answer {secret}"), engine=engine
    )  # an overflow page too
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "reject", "reason": "other", "comment": note}, engine=engine)
    path = engine.url.database
    retention.erase(r.id, actor="dpo", engine=engine)
    for suffix in ("", "-wal"):
        if os.path.exists(path + suffix):
            data = open(path + suffix, "rb").read()
            assert secret.encode() not in data and note.encode() not in data, suffix


# --- files readable by this account only -------------------------------------------------------


def test_the_database_and_export_files_are_not_world_readable(engine, queue, db_url, tmp_path, fake_clock):
    ingest.submit(item(1), engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    fake_clock.advance(2)
    [result] = export.export(tmp_path / "out", fmt="jsonl", engine=engine)
    for path in (result.path, result.manifest):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0, path
    if db_url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm", ".writelock"):
            if os.path.exists(engine.url.database + suffix):
                assert stat.S_IMODE(os.stat(engine.url.database + suffix).st_mode) & 0o077 == 0, suffix
