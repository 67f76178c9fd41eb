"""Who may call what: each scope against each route, queue limits, bad tokens."""

import logging

import pytest

from reviewqueue import tokens

from .conftest import item

ROUTES = {
    "post_item": ("POST", "/v1/items", lambda: item(1)),
    "post_batch": ("POST", "/v1/items/batch", lambda: {"items": [item(2)]}),
    "get_item": ("GET", "/v1/items/{id}", None),
    "list_items": ("GET", "/v1/items", None),
    "list_queues": ("GET", "/v1/queues", None),
    "put_queue": ("PUT", "/v1/queues/support", lambda: {"threshold": 0.8}),
    "claim": ("POST", "/v1/queues/support/claim", None),
    "release": ("POST", "/v1/items/{id}/release", None),
    "decision": ("POST", "/v1/items/{id}/decision", lambda: {"verdict": "approve"}),
}
ALLOWED = {
    "ingest": {"post_item", "post_batch", "get_item", "list_items", "list_queues"},
    "read": {"get_item", "list_items", "list_queues"},
    "review": {"get_item", "list_items", "list_queues", "claim", "release", "decision"},
    "admin": set(ROUTES),
}


@pytest.fixture
def stored_id(api, engine, queue, make_token):
    return api.post("/v1/items", json=item(0), headers=make_token("admin", user=None, name="seed")).json()[
        "id"
    ]


@pytest.mark.parametrize("scope", list(ALLOWED))
def test_scope_matrix(api, make_token, stored_id, scope):
    headers = make_token(scope, user="rita" if scope in ("review", "admin") else None)
    for name, (method, path, body) in ROUTES.items():
        r = api.request(method, path.format(id=stored_id), json=body() if body else None, headers=headers)
        if name in ALLOWED[scope]:
            assert r.status_code != 403, f"{scope} should be allowed {name}: {r.text}"
            assert r.status_code < 500
        else:
            assert r.status_code == 403, f"{scope} must not {name}: {r.status_code} {r.text}"
            assert scope in r.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer rq_unknown"},
    ],
)
def test_missing_or_unknown_token_is_401(api, queue, headers):
    for method, path, body in ROUTES.values():
        r = api.request(method, path.format(id="x"), json=body() if body else None, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_token_is_401_at_once(api, queue, make_token, engine):
    headers = make_token("ingest", name="soon-gone")
    assert api.post("/v1/items", json=item(1), headers=headers).status_code == 201
    tokens.revoke("soon-gone", engine=engine)
    r = api.post("/v1/items", json=item(2), headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_queue_limited_token(api, queue, label_queue, make_token, fake_clock):
    only_support = make_token("admin", user=None, queues=["support"])
    assert api.post("/v1/items", json=item(1), headers=only_support).status_code == 201
    other = {"queue": "tickets", "input": "x", "output": "bug", "confidence": 0.1}
    r = api.post("/v1/items", json=other, headers=only_support)
    assert r.status_code == 403 and "tickets" in r.json()["detail"]
    r = api.post("/v1/items/batch", json={"items": [item(2), other]}, headers=only_support)
    assert r.status_code == 403
    assert [q["name"] for q in api.get("/v1/queues", headers=only_support).json()] == ["support"]
    assert api.get("/v1/items", params={"queue": "tickets"}, headers=only_support).status_code == 403
    assert api.post("/v1/queues/tickets/claim", headers=only_support).status_code == 403
    tickets_item = api.post("/v1/items", json=other, headers=make_token("admin", user=None)).json()["id"]
    assert api.get(f"/v1/items/{tickets_item}", headers=only_support).status_code == 403
    fake_clock.advance(2)  # PostgreSQL polls show a change a second after it commits (items.poll)
    listed = api.get("/v1/items", headers=only_support).json()["items"]
    assert {i["queue"] for i in listed} == {"support"}


def test_tokens_never_reach_the_logs(api, queue, make_token, caplog):
    headers = make_token("ingest")
    secret = headers["Authorization"].split()[1]
    with caplog.at_level(logging.DEBUG):
        api.post("/v1/items", json=item(1), headers=headers)
        api.post("/v1/items", json={"bad": 1}, headers=headers)
        api.get("/v1/items/none", headers=headers)
    assert secret not in caplog.text


def test_token_validation(engine, queue):
    from reviewqueue.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        tokens.create("x", "superuser", engine=engine)
    with pytest.raises(ValidationFailed):
        tokens.create("rev", "review", engine=engine)  # a review token needs a user
    record, plaintext = tokens.create("ok", "read", engine=engine)
    assert (
        plaintext.startswith("rq_") and plaintext not in record.token_hash and record.prefix == plaintext[:10]
    )


def test_rotate_revokes_the_old_token_and_keeps_its_record(engine, queue):
    from reviewqueue.errors import AuthenticationFailed

    _, first = tokens.create("demo", "read", engine=engine)
    _, second = tokens.rotate("demo", "read", engine=engine)
    assert tokens.authenticate(second, engine=engine).token == "demo"
    with pytest.raises(AuthenticationFailed):
        tokens.authenticate(first, engine=engine)
    names = [t.name for t in tokens.all_tokens(engine=engine)]
    assert "demo" in names and any(n.startswith("demo@revoked-") for n in names)


def test_last_use_is_recorded(api, queue, make_token, engine):
    headers = make_token("read", name="watched")
    assert next(t for t in tokens.all_tokens(engine=engine) if t.name == "watched").last_used_at is None
    api.get("/v1/queues", headers=headers)
    assert next(t for t in tokens.all_tokens(engine=engine) if t.name == "watched").last_used_at is not None


def test_token_revoked_by_another_process_stops_within_a_second(api, queue, make_token, engine, db_url):
    import subprocess
    import sys
    import time

    headers = make_token("ingest", name="elsewhere")
    assert api.post("/v1/items", json=item(1), headers=headers).status_code == 201
    subprocess.run(
        [sys.executable, "-m", "reviewqueue.cli", "token", "revoke", "elsewhere"],
        check=True,
        env={**__import__("os").environ, "REVIEWQUEUE_DATABASE_URL": db_url},
        capture_output=True,
    )
    time.sleep(tokens.RECENT_SECONDS + 0.1)
    assert api.post("/v1/items", json=item(2), headers=headers).status_code == 401
