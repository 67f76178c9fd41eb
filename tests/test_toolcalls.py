"""Tool-call queues (toolcalls.py), on SQLite and PostgreSQL: a proposed call validated
against the tool's schema (422 naming the path), stored once per tool_call_id; the three
decisions read as what the agent must do, an edit checked against the tool's schema; the
deadline fallback; the HTTP routes and the client; the tool-call and chat exports."""

from __future__ import annotations

import json
import time

import pytest

from reviewqueue import deadlines, export, ingest, items, queues, review, toolcalls
from reviewqueue.errors import ValidationFailed

REFUND = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {
        "order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 500},
        "note": {"type": "string"},
    },
    "additionalProperties": False,
}
CONVERSATION = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "My order o-17 never came, refund please."},
]


@pytest.fixture
def refunds(engine):
    return queues.create(
        "refunds",
        {"kind": "tool_call", "threshold": 0.9, "audit_rate": 0.0, "reject_reasons": ["unsafe", "wrong"]},
        engine=engine,
    )


def call(n=1, **over):
    return {
        "queue": "refunds",
        "tool_call_id": f"call-{n}",
        "tool": "refund",
        "arguments": {"order_id": "o-17", "amount": 40.0},
        "tool_schema": REFUND,
        "conversation": CONVERSATION,
        **over,
    }


def test_a_proposed_call_is_checked_and_stored_once(engine, refunds):
    gate = toolcalls.Local(engine)
    first = gate.propose_tool_call(call())
    assert first.status == "pending" and first.route == "below_threshold"  # confidence 0 by default
    again = gate.propose_tool_call(call())
    assert again.duplicate and again.id == first.id
    item = items.get(first.id, engine=engine)
    assert item.output == {"tool": "refund", "arguments": {"order_id": "o-17", "amount": 40.0}}
    assert item.input == CONVERSATION and item.external_id == "call-1"
    with pytest.raises(ValidationFailed) as e:
        gate.propose_tool_call(call(2, arguments={"order_id": "17", "amount": 40.0}))
    assert e.value.errors[0]["loc"] == ["output", "arguments", "order_id"]
    with pytest.raises(ValidationFailed) as e:
        gate.propose_tool_call(call(3, tool_schema={"type": "objekt"}))
    assert "tool_schema" in str(e.value.errors[0]["loc"])
    # A plain item on a tool_call queue must be a call.
    with pytest.raises(ValidationFailed) as e:
        ingest.submit(
            {"queue": "refunds", "input": "x", "output": "refund it", "confidence": 0.1}, engine=engine
        )
    assert "tool calls" in e.value.errors[0]["msg"]
    with pytest.raises(ValidationFailed):
        ingest.submit(
            {"queue": "refunds", "input": "x", "output": {"tool": "refund"}, "confidence": 0.1}, engine=engine
        )
    assert queues.overview(engine=engine)[0].kind == "tool_call"


def test_decisions_tell_the_agent_what_to_do(engine, refunds):
    gate = toolcalls.Local(engine)
    ids = [gate.propose_tool_call(call(n)).id for n in range(1, 5)]
    assert gate.tool_decision(ids[0]).action == "pending"
    held = review.claim_next("refunds", "ann", engine=engine)
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    approved = gate.tool_decision(held.id)
    assert (approved.action, approved.arguments, approved.decided_by) == (
        "approve",
        {"order_id": "o-17", "amount": 40.0},
        "ann",
    )
    held = review.claim_next("refunds", "ann", engine=engine)
    too_much = {"tool": "refund", "arguments": {"order_id": "o-17", "amount": 900}}
    with pytest.raises(ValidationFailed) as e:
        review.decide(held.id, "ann", {"verdict": "correct", "final_output": too_much}, engine=engine)
    assert e.value.errors[0]["loc"] == ["final_output", "arguments", "amount"]
    other_tool = {"tool": "delete_account", "arguments": {"order_id": "o-17", "amount": 4}}
    with pytest.raises(ValidationFailed) as e:
        review.decide(held.id, "ann", {"verdict": "correct", "final_output": other_tool}, engine=engine)
    assert e.value.errors[0]["loc"] == ["final_output", "tool"]
    edited = {"tool": "refund", "arguments": {"order_id": "o-17", "amount": 25.0, "note": "partial"}}
    review.decide(held.id, "ann", {"verdict": "correct", "final_output": edited}, engine=engine)
    got = gate.tool_decision(held.id)
    assert got.action == "edit" and got.arguments == edited["arguments"]
    assert got.proposed_arguments == {"order_id": "o-17", "amount": 40.0}
    held = review.claim_next("refunds", "ann", engine=engine)
    review.decide(
        held.id,
        "ann",
        {"verdict": "reject", "reason": "unsafe", "comment": "Ask for a photo first."},
        engine=engine,
    )
    got = gate.tool_decision(held.id)
    assert (got.action, got.arguments, got.reason, got.message) == (
        "reject",
        None,
        "unsafe",
        "Ask for a photo first.",
    )
    # Auto-accepted: confident enough, nobody asked.
    sure = gate.propose_tool_call(call(9, confidence=0.99))
    assert (
        gate.tool_decision(sure.id).action == "approve" and gate.tool_decision(sure.id).source == "threshold"
    )


def test_the_deadline_fallback_rejects_a_late_call(engine, refunds, fake_clock):
    queues.update(
        "refunds",
        {"deadline_seconds": 60, "on_deadline": "reject", "deadline_reason": "wrong"},
        engine=engine,
    )
    gate = toolcalls.Local(engine)
    posted = gate.propose_tool_call(call())
    fake_clock.advance(61)
    deadlines.run_round(engine)
    got = gate.tool_decision(posted.id)
    assert (got.action, got.source, got.decided_by, got.reason) == ("reject", "deadline", "system", "wrong")


def test_over_http_with_the_client(api, live_server, engine, refunds, make_token):
    from reviewqueue.client import Client

    ingest_headers = make_token("ingest")
    resp = api.post("/v1/tool-calls", json={**call(), "arguments": {"amount": -1}}, headers=ingest_headers)
    assert resp.status_code == 422
    locs = [e["loc"] for e in resp.json()["detail"]]
    assert ["output", "arguments"] in locs or ["output", "arguments", "amount"] in locs
    resp = api.post("/v1/tool-calls", json={**call(), "arguments": "{not json"}, headers=ingest_headers)
    assert resp.status_code == 422
    # What only the item checks is a 422 too, never a 500 (found by Schemathesis).
    for bad in ({"deadline_seconds": 41136709}, {"deadline_seconds": 60, "deadline": "2030-01-01T00:00:00Z"}):
        resp = api.post("/v1/tool-calls", json={**call(), **bad}, headers=ingest_headers)
        assert resp.status_code == 422, resp.text
    rq = Client(live_server, make_token("admin", user="adam")["Authorization"].split()[1])
    posted = rq.propose_tool_call(call())
    assert rq.propose_tool_call(call()).duplicate
    assert api.get(f"/v1/tool-calls/{posted.id}", headers=make_token("read")).json()["action"] == "pending"
    held = review.claim_next("refunds", "ann", engine=engine)
    review.decide(
        held.id,
        "ann",
        {
            "verdict": "correct",
            "final_output": {"tool": "refund", "arguments": {"order_id": "o-17", "amount": 5}},
        },
        engine=engine,
    )
    got = rq.tool_decision(posted.id, wait=5)
    assert got.action == "edit" and got.arguments == {"order_id": "o-17", "amount": 5}


def test_tool_call_and_chat_exports(engine, refunds, tmp_path):
    gate = toolcalls.Local(engine)
    for n in range(1, 4):
        gate.propose_tool_call(call(n))
    verdicts = [
        {"verdict": "approve"},
        {
            "verdict": "correct",
            "final_output": {"tool": "refund", "arguments": {"order_id": "o-17", "amount": 20.0}},
        },
        {"verdict": "reject", "reason": "unsafe", "comment": "no"},
    ]
    for d in verdicts:
        held = review.claim_next("refunds", "ann", engine=engine)
        review.decide(held.id, "ann", d, engine=engine)
    time.sleep(1.2)  # exports take what has settled
    [r] = export.export(tmp_path, fmt="tool-calls-jsonl", queues=["refunds"], engine=engine)
    lines = [json.loads(x) for x in open(r.path, encoding="utf-8")]
    assert [x["decision"] for x in lines] == ["approve", "edit", "reject"] and r.rows == 3
    edit = lines[1]
    assert edit["proposed_call"] == {"tool": "refund", "arguments": {"order_id": "o-17", "amount": 40.0}}
    assert edit["edited_arguments"] == {"order_id": "o-17", "amount": 20.0}
    assert edit["arguments_diff"] == [{"path": "amount", "before": 40.0, "after": 20.0}]
    assert edit["context"]["conversation"] == CONVERSATION and edit["reviewer"] == "ann"
    assert edit["latency_seconds"] >= 0 and edit["tool_call_id"] == "call-2"
    assert (lines[2]["reason"], lines[2]["message"], lines[2]["edited_arguments"]) == ("unsafe", "no", None)
    [chat] = export.export(tmp_path, fmt="chat-jsonl", queues=["refunds"], engine=engine)
    records = [json.loads(x) for x in open(chat.path, encoding="utf-8")]
    assert len(records) == 2  # no right call to teach for a rejected one
    last = records[1]["messages"][-1]
    assert last["role"] == "assistant" and last["tool_calls"][0]["function"]["name"] == "refund"
    assert json.loads(last["tool_calls"][0]["function"]["arguments"]) == {"order_id": "o-17", "amount": 20.0}
    assert records[1]["messages"][:-1] == CONVERSATION
