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
