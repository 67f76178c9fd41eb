"""LangGraph / LangChain (integrations/langgraph.py) with the real packages and a fake chat
model, no network: a create_agent agent with HumanInTheLoopMiddleware raises 50 tool-call
interrupts; reviewers decide them over the API (60% approve, 25% edit, 15% reject); every
edit reaches the tool with the edited arguments, rejected calls never run and the model
reads the reviewer's message, each tool runs once though every decision is delivered
three times; the weekly export holds all 50 with the diffs."""

from __future__ import annotations

import json
import re
import time

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain")

from langchain.agents import create_agent  # noqa: E402
from langchain.agents.middleware import HumanInTheLoopMiddleware  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from reviewqueue import export  # noqa: E402
from reviewqueue.client import Client  # noqa: E402
from reviewqueue.integrations import langgraph as rq_langgraph  # noqa: E402

from .agent_reviews import decide_fifty, expected_runs, refunds_queue  # noqa: E402

CALLS = 50


class FakeAgentModel(BaseChatModel):
    """Asks for a refund as the user's message says; once the tool answered (or a
    reviewer said no), says what happened. Stateless, so one model serves every thread."""

    @property
    def _llm_type(self) -> str:
        return "fake-agent"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
        answered = [m for m in messages[last_human:] if isinstance(m, ToolMessage)]
        if answered:
            reply = AIMessage(content=f"done: {answered[-1].content}")
        else:
            order, amount = re.fullmatch(r"refund (o-\d+) ([\d.]+)", messages[last_human].content).groups()
            reply = AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": "refund",
                        "args": {"order_id": order, "amount": float(amount)},
                        "id": f"tc-{order}",
                    }
                ],
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def test_fifty_interrupts_decided_over_the_api(live_server, engine, make_token, tmp_path):
    runs: list[tuple[str, float]] = []

    @tool
    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        runs.append((order_id, amount))
        return f"refunded {amount} on {order_id}"

    refunds_queue(engine)
    agent = create_agent(
        FakeAgentModel(),
        tools=[refund],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"refund": True})],
        checkpointer=InMemorySaver(),
    )
    configs = [{"configurable": {"thread_id": f"t{n}"}} for n in range(CALLS)]
    app = Client(live_server, make_token("admin", user="adam")["Authorization"].split()[1])
    reviewer = Client(live_server, make_token("review", user="rita")["Authorization"].split()[1])
    posted = {}
    for n, config in enumerate(configs):
        agent.invoke({"messages": [{"role": "user", "content": f"refund o-{n} {10 + n}.0"}]}, config)
        assert runs == []  # paused before the tool
        [posted[n]] = rq_langgraph.post_interrupts(agent, config, gate=app, queue="refunds", tools=[refund])
        # Posting again (a retried step) finds the same item.
        assert rq_langgraph.post_interrupts(agent, config, gate=app, queue="refunds", tools=[refund]) == [
            posted[n]
        ]
    assert rq_langgraph.resume(agent, configs[0], gate=app, queue="refunds") is None  # nobody decided yet
    # Reviewers: 30 approve, 12 edit (half the amount), 8 reject with a message.
    plan = decide_fifty(reviewer, lambda item: int(item.external_id.split("tc-o-")[1]))
    assert len(plan) == CALLS
    # Every decision delivered three times (a webhook retried, a poll loop): one resume.
    results = {}
    for _ in range(3):
        for n, config in enumerate(configs):
            got = rq_langgraph.resume(agent, config, gate=app, queue="refunds")
            if got is not None:
                assert n not in results
                results[n] = got
    assert len(results) == CALLS
    assert sorted(runs) == expected_runs()
    for n in range(42, 50):
        told = [m for m in results[n]["messages"] if isinstance(m, ToolMessage)]
        assert "ask for a photo" in told[-1].content and f"o-{n}" not in {r[0] for r in runs}
    assert results[0]["messages"][-1].content == "done: refunded 10.0 on o-0"
    # The week's tool-call dataset: all fifty, with the diffs.
    time.sleep(1.2)
    [r] = export.export(tmp_path, fmt="tool-calls-jsonl", queues=["refunds"], engine=engine)
    lines = [json.loads(x) for x in open(r.path, encoding="utf-8")]
    assert len(lines) == CALLS
    by = {x["tool_call_id"]: x for x in lines}
    for n, (action, edited) in plan.items():
        line = by[f"t{n}:tc-o-{n}"]
        assert line["decision"] == action and line["edited_arguments"] == edited
        if action == "edit":
            assert line["arguments_diff"] == [{"path": "amount", "before": 10.0 + n, "after": (10 + n) / 2}]
        assert line["context"]["conversation"][0] == {"role": "user", "content": f"refund o-{n} {10 + n}.0"}


def test_per_call_interrupts_and_a_plain_interrupt(engine):
    """The middleware's per_call mode (one interrupt per call, two calls in one turn) and
    a graph of one's own that calls interrupt({"tool", "arguments"}); in-process gate."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    from reviewqueue import review, toolcalls

    refunds_queue(engine)
    gate = toolcalls.Local(engine)
    runs = []

    @tool
    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        runs.append((order_id, amount))
        return "refunded"

    class TwoCalls(FakeAgentModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            if any(isinstance(m, ToolMessage) for m in messages):
                return ChatResult(generations=[ChatGeneration(message=AIMessage(content="done"))])
            calls = [
                {"name": "refund", "args": {"order_id": f"o-{n}", "amount": 5.0}, "id": f"tc-{n}"}
                for n in (1, 2)
            ]
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=calls))])

    agent = create_agent(
        TwoCalls(),
        tools=[refund],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"refund": True}, interrupt_mode="per_call")],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "pc"}}
    agent.invoke({"messages": [{"role": "user", "content": "refund o-1 and o-2"}]}, config)
    ids = rq_langgraph.post_interrupts(agent, config, gate=gate, queue="refunds", tools=[refund])
    assert len(ids) == 2 and runs == []
    first = review.claim_next("refunds", "ann", engine=engine)
    review.decide(
        first.id,
        "ann",
        {
            "verdict": "correct",
            "final_output": {
                "tool": "refund",
                "arguments": {"order_id": first.output["arguments"]["order_id"], "amount": 2.5},
            },
        },
        engine=engine,
    )
    assert rq_langgraph.resume(agent, config, gate=gate, queue="refunds") is None  # one still pending
    second = review.claim_next("refunds", "ann", engine=engine)
    review.decide(second.id, "ann", {"verdict": "reject", "reason": "wrong"}, engine=engine)
    assert rq_langgraph.resume(agent, config, gate=gate, queue="refunds") is not None
    assert rq_langgraph.resume(agent, config, gate=gate, queue="refunds") is None
    assert runs == [(first.output["arguments"]["order_id"], 2.5)]

    # A graph of one's own: interrupt({"tool", "arguments"}) resumed with the decision.
    class State(TypedDict, total=False):
        decision: dict

    def ask(state):
        return {"decision": interrupt({"tool": "refund", "arguments": {"order_id": "o-9", "amount": 1.0}})}

    graph = StateGraph(State).add_node("ask", ask).add_edge(START, "ask").add_edge("ask", END)
    app = graph.compile(checkpointer=InMemorySaver())
    plain = {"configurable": {"thread_id": "plain"}}
    app.invoke({}, plain)
    [item_id] = rq_langgraph.post_interrupts(app, plain, gate=gate, queue="refunds")
    held = review.claim_next("refunds", "ann", engine=engine)
    assert held.id == item_id
    review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    out = rq_langgraph.resume(app, plain, gate=gate, queue="refunds")
    assert out["decision"]["action"] == "approve" and out["decision"]["arguments"] == {
        "order_id": "o-9",
        "amount": 1.0,
    }
