"""The HTTP API: every endpoint, bad input, and the claim/decision conflicts."""

import json

import pytest

from reviewqueue import queues

from .conftest import item


@pytest.fixture
def setup(api, engine, make_token, queue, label_queue):
    return {
        "ingest": make_token("ingest"),
        "review": make_token("review"),
        "read": make_token("read"),
        "admin": make_token("admin", user=None),
    }


def post_json(api, path, body, headers):
    return api.post(
        path,
        content=body if isinstance(body, (bytes, str)) else json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


def test_healthz(api, monkeypatch):
    assert api.get("/healthz").json() == {"status": "ok"}

    def down():
        raise ConnectionError("database is down")

    monkeypatch.setattr(api.app.state.probe, "check", down)
    r = api.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert api.get("/livez").json() == {"status": "alive"}  # the database is not asked


def test_post_item_then_duplicate(api, setup):
    r = api.post("/v1/items", json=item(1), headers=setup["ingest"])
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "pending" and body["route"] == "below_threshold" and body["duplicate"] is False
    again = api.post("/v1/items", json=item(1, output="other"), headers=setup["ingest"])
    assert again.status_code == 200
    assert again.json() == {**body, "duplicate": True}


@pytest.mark.parametrize(
    "raw, loc",
    [
        ('{"queue": "support", "input": "q", "output": "a", "confidence": NaN}', ["confidence"]),
        ('{"queue": "support", "input": "q", "output": "a", "confidence": Infinity}', ["confidence"]),
        ('{"queue": "support", "input": "q", "output": "a", "confidence": -0.1}', ["confidence"]),
        ('{"queue": "support", "input": "q", "output": "a", "confidence": 1.5}', ["confidence"]),
        ('{"queue": "support", "input": "q", "output": "a", "confidence": "high"}', ["confidence"]),
        ('{"queue": "support", "input": "q", "confidence": 0.5}', ["output"]),
        ('{"queue": "support", "input": "q", "output": 5, "confidence": 0.5}', ["output"]),
        ('{"queue": "Not A Slug", "input": "q", "output": "a", "confidence": 0.5}', ["queue"]),
        ('{"queue": "support", "input": "q", "output": "a", "confidence": 0.5', None),
        ("not json at all", None),
        ("[1, 2, 3]", None),
        ("", None),
    ],
)
def test_bad_items_are_422_with_a_clear_detail(api, setup, raw, loc, fake_clock):
    r = post_json(api, "/v1/items", raw, setup["ingest"])
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail[0]["msg"]
    if loc:
        assert detail[0]["loc"][: len(loc)] == loc
    assert "input" not in detail[0]  # never echoed back
    fake_clock.advance(2)  # PostgreSQL polls show a change a second after it commits (items.poll)
    assert api.get("/v1/items", headers=setup["read"]).json()["items"] == []


def test_unknown_queue_is_404(api, setup):
    r = api.post("/v1/items", json=item(1, queue="ghost"), headers=setup["ingest"])
    assert r.status_code == 404 and "ghost" in r.json()["detail"]


def test_two_mib_item_is_413_before_parsing(api, setup):
    r = api.post("/v1/items", json=item(1, output="x" * (2 * 1024 * 1024)), headers=setup["ingest"])
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_batch_atomic_with_every_bad_index(api, setup, fake_clock):
    good = [item(i) for i in range(3)]
    r = api.post("/v1/items/batch", json={"items": good}, headers=setup["ingest"])
    assert r.status_code == 200 and [x["duplicate"] for x in r.json()["results"]] == [False] * 3
    bad = [item(10), item(11, confidence=float("nan")), item(12), item(13, input=None)]
    r = post_json(api, "/v1/items/batch", json.dumps({"items": bad}), setup["ingest"])
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert ["items", 1, "confidence"] in locs and any(loc[:2] == ["items", 3] for loc in locs)
    fake_clock.advance(2)  # PostgreSQL polls show a change a second after it commits (items.poll)
    assert len(api.get("/v1/items", headers=setup["read"]).json()["items"]) == 3


def test_batch_limits(api, setup):
    r = api.post("/v1/items/batch", json={"items": [item(i) for i in range(1001)]}, headers=setup["ingest"])
    assert r.status_code == 422 and "1000" in r.json()["detail"][0]["msg"]
    assert api.post("/v1/items/batch", json={"items": []}, headers=setup["ingest"]).status_code == 422
    r = api.post(
        "/v1/items/batch", json={"items": [item(1), item(2, queue="ghost")]}, headers=setup["ingest"]
    )
    assert r.status_code == 404


def test_get_item_with_decision(api, setup):
    item_id = api.post("/v1/items", json=item(1, output="draft"), headers=setup["ingest"]).json()["id"]
    got = api.get(f"/v1/items/{item_id}", headers=setup["ingest"]).json()
    assert got["status"] == "pending" and got["decision"] is None and got["output"] == "draft"
    claimed = api.post("/v1/queues/support/claim", headers=setup["review"])
    assert (
        claimed.status_code == 200 and claimed.json()["id"] == item_id and claimed.json()["lease_expires_at"]
    )
    r = api.post(
        f"/v1/items/{item_id}/decision",
        json={"verdict": "correct", "final_output": "better"},
        headers=setup["review"],
    )
    assert r.status_code == 200
    d = api.get(f"/v1/items/{item_id}", headers=setup["read"]).json()
    assert d["status"] == "corrected"
    assert d["decision"]["verdict"] == "correct" and d["decision"]["final_output"] == "better"
    assert d["decision"]["reviewer"] == "rita" and d["decision"]["decided_at"]
    assert api.get("/v1/items/nope", headers=setup["read"]).status_code == 404


def test_list_items_keyset_pagination_and_filters(api, setup, fake_clock):
    api.post("/v1/items/batch", json={"items": [item(i) for i in range(25)]}, headers=setup["ingest"])
    fake_clock.advance(2)  # PostgreSQL polls show a change a second after it commits (items.poll)
    seen, cursor = [], None
    while True:
        params = {"queue": "support", "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/items", params=params, headers=setup["read"]).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 25 == len(set(seen))
    assert api.get("/v1/items", params={"status": "approved"}, headers=setup["read"]).json()["items"] == []
    future = api.get("/v1/items", params={"updated_since": "2999-01-01T00:00:00Z"}, headers=setup["read"])
    assert future.json()["items"] == []
    assert api.get("/v1/items", params={"cursor": "garbage!"}, headers=setup["read"]).status_code == 422
    assert api.get("/v1/items", params={"limit": 0}, headers=setup["read"]).status_code == 422


def test_queues_list_and_put(api, setup, engine):
    api.post("/v1/items", json=item(1), headers=setup["ingest"])
    listed = {q["name"]: q for q in api.get("/v1/queues", headers=setup["read"]).json()}
    assert listed["support"]["counts"] == {"pending": 1} and listed["tickets"]["labels"]
    r = api.put("/v1/queues/new-q", json={"threshold": 0.6, "labels": ["a", "b"]}, headers=setup["admin"])
    assert r.status_code == 201 and r.json()["threshold"] == 0.6
    r = api.put("/v1/queues/new-q", json={"audit_rate": 0.1}, headers=setup["admin"])
    assert r.status_code == 200 and r.json()["audit_rate"] == 0.1 and r.json()["threshold"] == 0.6
    assert queues.get("new-q", engine=engine).labels == ["a", "b"]
    assert api.put("/v1/queues/new-q", json={"threshold": 2}, headers=setup["admin"]).status_code == 422
    assert api.put("/v1/queues/new-q", json={"colour": "red"}, headers=setup["admin"]).status_code == 422
    assert api.put("/v1/queues/BAD NAME", json={}, headers=setup["admin"]).status_code == 422


def test_claim_204_when_empty_and_409_after_lease_lost(api, setup, make_token, fake_clock):
    assert api.post("/v1/queues/support/claim", headers=setup["review"]).status_code == 204
    item_id = api.post("/v1/items", json=item(1), headers=setup["ingest"]).json()["id"]
    assert api.post("/v1/queues/support/claim", headers=setup["review"]).json()["id"] == item_id
    other = make_token("review", user="otto")
    fake_clock.advance(61)
    assert api.post("/v1/queues/support/claim", headers=other).json()["id"] == item_id
    late = api.post(f"/v1/items/{item_id}/decision", json={"verdict": "approve"}, headers=setup["review"])
    assert late.status_code == 409 and "otto" in late.json()["detail"]
    bad = api.post(
        f"/v1/items/{item_id}/decision", json={"verdict": "reject", "reason": "nope"}, headers=other
    )
    assert bad.status_code == 422 and "reason" in json.dumps(bad.json())
    assert (
        api.post(f"/v1/items/{item_id}/decision", json={"verdict": "maybe"}, headers=other).status_code == 422
    )
    ok = api.post(
        f"/v1/items/{item_id}/decision", json={"verdict": "reject", "reason": "incorrect"}, headers=other
    )
    assert ok.status_code == 200 and ok.json()["status"] == "rejected"
    again = api.post(f"/v1/items/{item_id}/decision", json={"verdict": "approve"}, headers=other)
    assert again.status_code == 409


def test_release_gives_the_item_back(api, setup):
    item_id = api.post("/v1/items", json=item(1), headers=setup["ingest"]).json()["id"]
    api.post("/v1/queues/support/claim", headers=setup["review"])
    r = api.post(f"/v1/items/{item_id}/release", headers=setup["review"])
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert api.post(f"/v1/items/{item_id}/release", headers=setup["review"]).status_code == 409


def test_metrics(api, setup):
    api.post("/v1/items/batch", json={"items": [item(1), item(2, confidence=0.95)]}, headers=setup["ingest"])
    item_id = api.post("/v1/queues/support/claim", headers=setup["review"]).json()["id"]
    api.post(f"/v1/items/{item_id}/decision", json={"verdict": "approve"}, headers=setup["review"])
    text = api.get("/metrics").text
    # Figures read from the shared database say so (scope="cluster": take one, never a
    # sum over nodes); this process's own say scope="process" (sum them).
    assert (
        'reviewqueue_items_ingested_total{queue="support",route="below_threshold",scope="cluster"} 1.0'
        in text
    )
    assert (
        'reviewqueue_items_ingested_total{queue="support",route="auto_accepted",scope="cluster"} 1.0' in text
    )
    assert 'reviewqueue_decisions_total{queue="support",scope="cluster",verdict="approve"} 1.0' in text
    assert 'reviewqueue_backlog_items{queue="support",scope="cluster"} 0.0' not in text  # nothing waiting
    assert "reviewqueue_oldest_pending_age_seconds" in text
    assert (
        'reviewqueue_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/v1/items/batch",'
        'scope="process"' in text
    )
    assert 'reviewqueue_webhook_deliveries_total{outcome="delivered",scope="process"}' in text


def test_openapi_and_docs(api):
    spec = api.get("/openapi.json").json()
    assert {
        "/v1/items",
        "/v1/items/batch",
        "/v1/items/{item_id}",
        "/v1/queues",
        "/v1/queues/{name}",
        "/v1/queues/{name}/claim",
        "/v1/items/{item_id}/release",
        "/v1/items/{item_id}/decision",
        "/healthz",
        "/metrics",
    } <= set(spec["paths"])
    assert api.get("/docs").status_code == 200


def test_a_started_worker_keeps_its_start_up_heap_out_of_the_collector(api):
    import gc

    # Full collections over the start-up heap paused workers for tens of milliseconds.
    assert gc.get_freeze_count() > 10_000
    assert api.get("/healthz").status_code == 200


def test_poll_never_skips_a_change_that_commits_late(api, setup, engine, fake_clock):
    """A poller moves past the newest updated_at it saw. A change stamped earlier but
    committed later must not appear behind it: on PostgreSQL a poll holds back what an
    open transaction could still precede; on SQLite writers take turns under the lock."""
    from sqlalchemy import text

    fake_clock.advance(-5)  # well before the slow transaction below
    early = api.post("/v1/items", json=item(1), headers=setup["ingest"]).json()["id"]
    fake_clock.advance(5)
    slow_engine = engine.execution_options(sqlite_begin="DEFERRED")  # SQLite: a reader, not the writer
    with slow_engine.connect() as slow:  # a transaction that began before the next change
        slow.execute(text("SELECT 1"))
        later = api.post("/v1/items", json=item(2), headers=setup["ingest"]).json()["id"]
        seen = [i["id"] for i in api.get("/v1/items", headers=setup["read"]).json()["items"]]
        if engine.dialect.name == "postgresql":
            assert seen == [early]  # `later` waits: `slow` could still commit an earlier time
        else:
            assert seen == [early, later]
        slow.rollback()
    fake_clock.advance(2)
    assert [i["id"] for i in api.get("/v1/items", headers=setup["read"]).json()["items"]] == [early, later]
