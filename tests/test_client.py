"""The Python client against a real server; retries that never duplicate; concurrent posts."""

import threading

import httpx
import pytest

from reviewqueue import items
from reviewqueue.client import Client, ServerError
from reviewqueue.errors import AuthenticationFailed, NotFound, ValidationFailed

from .conftest import item


def test_client_round_trip(live_server, queue, make_token, engine):
    admin = make_token("admin", user="rita")["Authorization"].split()[1]
    with Client(live_server, admin) as rq:
        r = rq.submit({"queue": "support", "input": "q", "output": "a", "confidence": 0.3})
        assert r.status == "pending" and not r.duplicate
        results = rq.submit_many([item(i) for i in range(2500)], batch_size=1000)
        assert len(results) == 2500 and not any(x.duplicate for x in results)
        assert [q.name for q in rq.queues()] == ["support"]
        claimed = rq.claim("support")
        decided = rq.decide(claimed.id, "correct", final_output="better")
        assert decided.decision.final_output == "better"
        assert rq.wait_for_decision(claimed.id, timeout=5).status == "corrected"
        with pytest.raises(TimeoutError):
            rq.wait_for_decision(r.id if r.id != claimed.id else results[0].id, timeout=0.3, poll=0.1)
        with pytest.raises(ValidationFailed) as e:
            rq.submit({"queue": "support", "input": "q", "output": "a", "confidence": 7})
        assert e.value.errors[0]["loc"] == ["confidence"]
        with pytest.raises(NotFound):
            rq.get("missing")
    with Client(live_server, "rq_wrong") as rq, pytest.raises(AuthenticationFailed):
        rq.get("x")


def test_retries_after_5xx_never_duplicate(live_server, queue, make_token, engine):
    """The first attempt reaches the server and is stored, but the answer is lost
    (a 502 from a proxy): the retry must return the same item, not a new one."""
    token = make_token("ingest")["Authorization"].split()[1]
    real = httpx.HTTPTransport()
    calls = {"n": 0}

    class Flaky(httpx.BaseTransport):
        def handle_request(self, request):
            calls["n"] += 1
            response = real.handle_request(request)
            if calls["n"] == 1:
                response.read()
                return httpx.Response(502, json={"detail": "bad gateway"})
            return response

    with Client(live_server, token, transport=Flaky()) as rq:
        r = rq.submit({"queue": "support", "input": "q", "output": "a", "confidence": 0.3})
    assert calls["n"] == 2 and r.duplicate
    assert items.count(items.ItemFilter(), engine=engine) == 1


def test_unreachable_server_raises_after_retries():
    with Client("http://127.0.0.1:9", "t", retries=1) as rq, pytest.raises(ServerError):
        rq.get("x")


def test_concurrent_posts_of_one_external_id(live_server, queue, make_token, engine):
    headers = make_token("ingest")
    barrier = threading.Barrier(16)
    codes = []

    def post():
        with httpx.Client(base_url=live_server, headers=headers) as http:
            barrier.wait()
            codes.append(http.post("/v1/items", json=item(42)).status_code)

    threads = [threading.Thread(target=post) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 15 + [201]
    assert items.count(items.ItemFilter(), engine=engine) == 1
