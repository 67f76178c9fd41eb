"""The attacker's findings (#12), each as it was found: unstorable text, access that
outlived a deactivation, sign-in limits, late decisions, slow clients, /metrics."""

import json
import socket
import time

import pytest

from reviewqueue import audit, ingest, review, store, tokens, users
from reviewqueue.errors import AuthenticationFailed, LeaseLost, RateLimited
from reviewqueue.groupcommit import GroupCommit
from reviewqueue.schemas import ItemIn

from .conftest import item

SURROGATE = "x\ud800"


# --- text the database cannot store ---------------------------------------------------------


@pytest.mark.parametrize(
    "over",
    [
        {"input": SURROGATE},
        {"output": {"a": SURROGATE}},
        {"metadata": {SURROGATE: 1}},
        {"metadata": {"k": "a\x00b"}},
        {"context": [{"text": SURROGATE}]},
        {"external_id": "e\x00"},
        {"model": SURROGATE},
    ],
)
def test_unstorable_text_is_a_422_everywhere(api, queue, make_token, over):
    headers = {**make_token("ingest"), "Content-Type": "application/json"}
    body = json.dumps(
        {**item(1), **over}
    )  # json.dumps escapes the surrogate as \\ud800, as a client would send it
    assert api.post("/v1/items", content=body, headers=headers).status_code == 422
    batch = json.dumps({"items": [item(2), {**item(3), **over}]})
    r = api.post("/v1/items/batch", content=batch, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["items", 1]


def test_queue_settings_refuse_unstorable_text(api, make_token):
    headers = {**make_token("admin"), "Content-Type": "application/json"}
    for description in ("d\u0000d", "d\ud800"):
        r = api.put("/v1/queues/x", content=json.dumps({"description": description}), headers=headers)
        assert r.status_code == 422, r.text
    r = api.post(
        "/v1/items/nothing/decision",
        json={"verdict": "reject", "reason": "r", "comment": "c\x00"},
        headers=make_token("review"),
    )
    assert r.status_code == 422


def test_a_group_isolates_a_failure_raised_while_storing(engine, queue):
    """Even an item that slipped past validation and fails in the driver (here built
    without validating) costs only its own caller."""
    writes = GroupCommit(engine)
    try:
        bad = ItemIn.model_construct(
            **{
                **item(99),
                "input": SURROGATE,
                "output": "o",
                "context": [],
                "metadata": {},
                "priority": 0,
                "model": None,
                "model_version": None,
                "predicted_label": None,
            }
        )
        requests = [(item(i), "app") for i in range(5)] + [(bad, "app")]
        futures = [writes.submit(ingest.submit_each, requests)]
        [results] = [f.result(30) for f in futures]
    finally:
        writes.stop()
    assert all(not isinstance(r, Exception) for r in results[:5])
    assert isinstance(results[5], Exception)
    from reviewqueue import items

    assert items.count(items.ItemFilter(), engine=engine) == 5


# --- access that ends when it should -----------------------------------------------------


def test_a_deactivated_users_token_stops_at_once(api, engine, queue, make_token):
    headers = make_token("review", user="rev")
    ingest.submit(item(1), engine=engine)
    assert api.post("/v1/queues/support/claim", headers=headers).status_code == 200
    users.update("rev", active=False, engine=engine)
    r = api.post("/v1/queues/support/claim", headers=headers)
    assert r.status_code == 401 and "not active" in r.json()["detail"]
    users.update("rev", active=True, engine=engine)
    assert api.post("/v1/queues/support/claim", headers=headers).status_code == 200


def test_a_demoted_admins_token_administers_nothing(api, engine, make_token):
    headers = make_token("admin", user="boss")
    assert api.put("/v1/queues/q1", json={}, headers=headers).status_code == 201
    users.update("boss", role="reviewer", engine=engine)
    r = api.put("/v1/queues/q2", json={}, headers=headers)
    assert r.status_code == 403 and "reviewer" in r.json()["detail"]
    assert api.get("/v1/queues", headers=headers).status_code == 200  # reading is still allowed


def test_an_expired_token_is_refused(api, engine, make_token, fake_clock):
    from datetime import timedelta

    headers = make_token("read", expires_in=timedelta(days=1))
    assert api.get("/v1/queues", headers=headers).status_code == 200
    fake_clock.advance(86_401)
    tokens.forget_recent()
    r = api.get("/v1/queues", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


# --- sign-in limits ----------------------------------------------------------------------------


def _fail(name, client, engine, n=1):
    for _ in range(n):
        with pytest.raises((AuthenticationFailed, RateLimited)):
            users.authenticate(name, "wrong-password", client=client, engine=engine)


def test_sign_in_backs_off_instead_of_locking_the_real_user_out(engine, fake_clock):
    users.add("boss", password="right-password", engine=engine)
    users.add("BOSS", password="other-password", engine=engine)
    _fail("boss", "10.0.0.66", engine, n=6)  # an attacker's guesses from one client
    with pytest.raises(RateLimited) as e:
        users.authenticate("boss", "wrong-password", client="10.0.0.66", engine=engine)
    assert "try again in" in str(e.value)
    # The real user from their own browser: not locked out.
    assert users.authenticate("boss", "right-password", client="10.0.0.7", engine=engine).name == "boss"
    assert users.authenticate("BOSS", "other-password", client="10.0.0.66", engine=engine).name == "BOSS"
    fake_clock.advance(5)  # a back-off, not a lock-out: the attacker may try again soon, once
    _fail("boss", "10.0.0.66", engine)


def test_guessers_on_four_addresses_cannot_keep_the_owner_out(engine, fake_clock, monkeypatch):
    """The attack that kept a user out (0 of 30 sign-ins over 150 s): four addresses each
    failing one user name every 6 s. The owner signs in every 5 s, from the browser she
    used before and from a new one: every sign-in succeeds, slowed by at most
    NAME_MAX_DELAY; the attackers are refused, and their refusals cost them, not her."""
    slept = []
    monkeypatch.setattr(users.time, "sleep", slept.append)
    users.add("maria", password="right-password", engine=engine)
    users.authenticate("maria", "right-password", client="192.0.2.10", engine=engine)  # her usual browser
    attackers = [f"198.51.100.{k}" for k in range(1, 5)]
    refused = guessed = signed_in = 0
    for tick in range(150 * 2):  # half-second steps
        fake_clock.advance(0.5)
        if tick % 12 < 4:  # each attacker once every 6 s, staggered
            try:
                users.authenticate("maria", "guess", client=attackers[tick % 12], engine=engine)
            except RateLimited:
                refused += 1
            except AuthenticationFailed:
                guessed += 1
        if tick % 10 == 0:
            own = "192.0.2.10" if tick % 20 == 0 else "203.0.113.99"  # and a browser she never used
            assert users.authenticate("maria", "right-password", client=own, engine=engine).name == "maria"
            signed_in += 1
    assert signed_in == 30
    assert (
        refused + guessed == 100 and guessed <= 4 * 8
    )  # each attacker: 5 free, then a few as the wait doubles
    assert max(slept, default=0) <= users.NAME_MAX_DELAY
    # Each refused burst is recorded once per client and window, not once per attempt.
    limited = [
        e
        for e in audit.events(audit.EventFilter(kind="user.sign_in_failed"), limit=10_000, engine=engine)
        if (e.after or {}).get("limited")
    ]
    assert 4 <= len(limited) <= 4 * 2, len(limited)


def test_passwords_are_stored_as_argon2id_at_the_recommended_cost(engine):
    """The tests hash cheaply (conftest); what the product stores is argon2id with at
    least RFC 9106's second recommended cost (64 MiB, 3 passes)."""
    from argon2 import extract_parameters

    from .conftest import PRODUCTION_HASHER

    stored = PRODUCTION_HASHER.hash("correct horse battery staple")
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert params.memory_cost >= 65536 and params.time_cost >= 3
    assert PRODUCTION_HASHER.verify(stored, "correct horse battery staple")


def test_spraying_many_names_from_one_client_is_slowed(engine):
    for n in range(21):
        _fail(f"user{n}", "10.9.9.9", engine)
    with pytest.raises(RateLimited):
        users.authenticate("user99", "x", client="10.9.9.9", engine=engine)


def test_the_counters_survive_a_restart_and_failures_are_events(engine, db_url):
    users.add("boss", password="right-password", engine=engine)
    _fail("boss", "10.0.0.66", engine, n=6)
    store.dispose_engines()  # a new process would start with fresh memory and the same database
    fresh = store.get_engine(db_url)
    with pytest.raises(RateLimited):
        users.authenticate("boss", "wrong-password", client="10.0.0.66", engine=fresh)
    failed = audit.events(audit.EventFilter(kind="user.sign_in_failed"), engine=fresh)
    assert len(failed) == 6 and failed[0].actor == "client:10.0.0.66" and failed[0].after == {"name": "boss"}
    assert failed[-1].after == {"name": "boss", "limited": True}  # the refused burst is on record, once


# --- late decisions --------------------------------------------------------------------------


def test_a_late_decision_counts_while_nobody_else_took_the_item(engine, queue, fake_clock):
    ingest.submit_many([item(1), item(2)], engine=engine)
    held = review.claim_next("support", "ann", engine=engine)
    fake_clock.advance(61)  # past the 60 s lease
    # bob's claim sweeps ann's lease back to the queue, and (passing over it) takes the other item
    other = review.claim_next("support", "bob", exclude=[held.id], engine=engine)
    assert other.id != held.id
    from reviewqueue import items

    assert items.get(held.id, engine=engine).status == "pending"
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)  # nobody took it: accepted


def test_a_late_decision_after_someone_else_claimed_is_a_409(api, engine, queue, make_token, fake_clock):
    ingest.submit(item(1), engine=engine)
    ann, bob = make_token("review", user="ann"), make_token("review", user="bob")
    held = api.post("/v1/queues/support/claim", headers=ann).json()
    fake_clock.advance(61)
    assert api.post("/v1/queues/support/claim", headers=bob).json()["id"] == held["id"]
    r = api.post(f"/v1/items/{held['id']}/decision", json={"verdict": "approve"}, headers=ann)
    assert r.status_code == 409 and "bob" in r.json()["detail"]
    with pytest.raises(LeaseLost):
        review.decide(held["id"], "ann", {"verdict": "approve"}, engine=engine)


# --- slow clients and /metrics --------------------------------------------------------------------


def _serve(app):
    import threading

    import uvicorn

    from .conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return server, thread, port


def test_a_slow_request_body_is_cut_off(db_url, engine):
    from reviewqueue.api.app import create_app
    from reviewqueue.settings import Settings

    server, thread, port = _serve(
        create_app(db_url, settings=Settings(database_url=db_url, body_timeout_seconds=1))
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            started = time.monotonic()
            answer = s.recv(1000)
        assert b" 408 " in answer.split(b"\r\n")[0] and time.monotonic() - started < 10
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_metrics_can_require_a_token(db_url, engine, make_token):
    from fastapi.testclient import TestClient

    from reviewqueue.api.app import create_app
    from reviewqueue.settings import Settings

    headers = make_token("read")
    app = create_app(db_url, settings=Settings(database_url=db_url, metrics_token=True), background=False)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=headers).status_code == 200
    with TestClient(create_app(db_url, background=False)) as client:
        assert client.get("/metrics").status_code == 200  # open unless asked for


def test_the_review_app_answers_only_its_host_names_from_any_folder():
    from reviewqueue import cli

    command = cli.ui_command("127.0.0.1", 8501)
    assert "--server.allowedHosts=localhost" in command and "--server.allowedHosts=127.0.0.1" in command
