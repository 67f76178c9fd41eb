"""The OpenAI Agents SDK (integrations/openai_agents.py) with the real package and its
scripted model, no network: 50 gated tool calls pause their runs; reviewers decide them
over the API (60% approve, 25% edit, 15% reject); decisions applied to the saved run
states: every edit reaches the tool with the edited arguments, rejected calls never run
and the model reads the reviewer's message, each tool runs once though every saved
state is applied three times; the weekly export holds all 50 with the diffs. And an
approval that comes while the call waits lets it run without a pause."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

pytest.importorskip("agents")

from agents import Agent, Runner, function_tool  # noqa: E402
from agents.testing.model import ScriptedModel, assistant_message, function_call  # noqa: E402

from reviewqueue import export, review, toolcalls  # noqa: E402
from reviewqueue.client import Client  # noqa: E402
from reviewqueue.integrations import openai_agents as rq_agents  # noqa: E402

from .agent_reviews import decide_fifty, expected_runs, refunds_queue  # noqa: E402

CALLS = 50


@pytest.fixture
def refunds(engine):
    return refunds_queue(engine)


def agent_for(n: int, tool) -> Agent:
    model = ScriptedModel(
        [
            [function_call("refund", {"order_id": f"o-{n}", "amount": 10.0 + n}, call_id=f"call-{n}")],
            [assistant_message(f"finished {n}")],
        ]
    )
    return Agent(name=f"support-{n}", model=model, tools=[tool])


def test_fifty_paused_runs_resumed_with_the_decisions(live_server, engine, refunds, make_token, tmp_path):
    runs: list[tuple[str, float]] = []

    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        runs.append((order_id, amount))
        return f"refunded {amount} on {order_id}"

    app = Client(live_server, make_token("admin", user="adam")["Authorization"].split()[1])
    reviewer = Client(live_server, make_token("review", user="rita")["Authorization"].split()[1])
    tool = rq_agents.gated(function_tool(refund), gate=app, queue="refunds")
    agents = [agent_for(n, tool) for n in range(CALLS)]

    async def first_runs():
        return [await Runner.run(agents[n], f"refund o-{n}") for n in range(CALLS)]

    saved = []
    for result in asyncio.run(first_runs()):
        assert len(result.interruptions) == 1
        saved.append(result.to_state().to_json())
    assert runs == []
    plan = decide_fifty(reviewer, lambda item: int(item.external_id.removeprefix("call-")))
    assert len(plan) == CALLS

    async def resume_all():
        finished = {}
        for _ in range(3):  # every saved state applied three times
            for n in range(CALLS):
                state = await rq_agents.apply_decisions(agents[n], saved[n], gate=app, queue="refunds")
                if state is not None:
                    assert n not in finished
                    finished[n] = await Runner.run(agents[n], state)
        return finished

    finished = asyncio.run(resume_all())
    assert len(finished) == CALLS and all(r.final_output == f"finished {n}" for n, r in finished.items())
    assert sorted(runs) == expected_runs()
    for n in range(42, 50):
        seen = json.dumps([c.input for c in agents[n].model.calls], default=str)
        assert f"No refund for o-{n}: ask for a photo." in seen
    time.sleep(1.2)
    [r] = export.export(tmp_path, fmt="tool-calls-jsonl", queues=["refunds"], engine=engine)
    lines = {x["tool_call_id"]: x for x in map(json.loads, open(r.path, encoding="utf-8"))}
    assert len(lines) == CALLS
    for n, (action, edited) in plan.items():
        assert lines[f"call-{n}"]["decision"] == action and lines[f"call-{n}"]["edited_arguments"] == edited


def test_an_approval_in_time_runs_the_call_without_a_pause(engine, refunds):
    runs = []

    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        runs.append((order_id, amount))
        return "refunded"

    gate = toolcalls.Local(engine, poll=0.05)
    tool = rq_agents.gated(function_tool(refund), gate=gate, queue="refunds", wait=20)

    def reviewer():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            held = review.claim_next("refunds", "ann", engine=engine)
            if held is not None:
                review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
                return
            time.sleep(0.05)

    t = threading.Thread(target=reviewer)
    t.start()
    result = asyncio.run(Runner.run(agent_for(7, tool), "refund o-7"))
    t.join()
    assert result.interruptions == [] and result.final_output == "finished 7"
    assert runs == [("o-7", 17.0)]
