"""LangChain / LangGraph: tool calls paused by ``HumanInTheLoopMiddleware`` (or a plain
``interrupt``) become reviewqueue items; the graph resumes with the reviewers' decisions.

    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware
    from reviewqueue.integrations import langgraph as rq_langgraph

    agent = create_agent(model, tools=[refund],
                         middleware=[HumanInTheLoopMiddleware(interrupt_on={"refund": True})],
                         checkpointer=saver)
    agent.invoke({"messages": [...]}, config)             # pauses before refund runs
    rq_langgraph.post_interrupts(agent, config, gate=gate, queue="refunds", tools=[refund])
    ...                                                   # reviewers decide
    rq_langgraph.resume(agent, config, gate=gate)         # runs, edits or skips refund

Interrupts understood: the middleware's batched ``HITLRequest`` (one interrupt per model
turn, answered with ``{"decisions": [...]}``), its ``per_call`` ``ToolApprovalRequest``
(one per call, answered with one decision), and a plain ``interrupt({"tool": name,
"arguments": {...}})`` of your own graph (answered with the :class:`ToolDecision` as a
dict). ``approve`` runs the call, ``edit`` runs it with the reviewer's arguments,
``reject`` skips it and the model reads the reviewer's comment (or the reason).

Exactly once: :func:`resume` answers only interrupts the graph is still paused on (the
checkpointer is the truth), and marks each decision applied in reviewqueue before it
resumes (``gate.mark_applied``): a decision delivered three times, or two workers
resuming one thread, resume it once.

``gate`` is :class:`reviewqueue.toolcalls.Local` (in-process) or
:class:`reviewqueue.client.Client` (HTTP). Needs ``pip install "reviewqueue[langgraph]"``.
"""

from __future__ import annotations

from typing import Any

from ..toolcalls import ToolDecision


def _interrupts(graph, config) -> list:
    return list(graph.get_state(config).interrupts)


def _conversation(graph, config) -> list[dict[str, Any]]:
    from langchain_core.messages import convert_to_openai_messages

    messages = (graph.get_state(config).values or {}).get("messages") or []
    return convert_to_openai_messages(messages) if messages else []


def _last_tool_calls(graph, config) -> list[dict[str, Any]]:
    from langchain_core.messages import AIMessage

    messages = (graph.get_state(config).values or {}).get("messages") or []
    last = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    return list(last.tool_calls) if last is not None else []


def _schemas(tools) -> dict[str, dict]:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    out = {}
    for t in tools or ():
        spec = convert_to_openai_tool(t)["function"]
        out[spec["name"]] = spec.get("parameters") or {"type": "object"}
    return out


def calls_of(interrupt, tool_calls: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str, dict]]]:
    """``(kind, [(tool_call_id, tool, arguments)])`` of one interrupt; kind is
    ``batched``, ``per_call`` or ``plain``."""
    value = interrupt.value
    if isinstance(value, dict) and "action_requests" in value:
        unused = list(tool_calls)
        calls = []
        for n, action in enumerate(value["action_requests"]):
            match = next(
                (c for c in unused if c.get("name") == action["name"] and c.get("args") == action["args"]),
                None,
            )
            if match is not None:
                unused.remove(match)
            call_id = (match or {}).get("id") or f"{interrupt.id}:{n}"
            calls.append((call_id, action["name"], dict(action["args"])))
        return "batched", calls
    if isinstance(value, dict) and value.get("type") == "tool_approval":
        return "per_call", [(value["tool_call_id"], value["name"], dict(value["args"]))]
    if isinstance(value, dict) and "tool" in value:
        args = value.get("arguments", value.get("args", {}))
        return "plain", [(str(value.get("tool_call_id") or interrupt.id), value["tool"], dict(args))]
    raise ValueError(f"interrupt {interrupt.id} is not a tool call reviewqueue understands: {value!r:.200}")


def post_interrupts(
    graph, config, *, gate, queue: str, tools=None, thread_id: str | None = None, **fields
) -> list[str]:
    """Post every tool call the graph is paused on as an item of ``queue`` (idempotent:
    the tool call's id is the item's key); returns the item ids. ``tools`` gives the
    argument schemas reviewers' edits are checked against; ``fields`` go into every
    call (``deadline_seconds``, ``model``, ``metadata``...)."""
    thread = thread_id or config.get("configurable", {}).get("thread_id", "")
    schemas, conversation, tool_calls = (
        _schemas(tools),
        _conversation(graph, config),
        _last_tool_calls(graph, config),
    )
    ids = []
    for interrupt in _interrupts(graph, config):
        _, calls = calls_of(interrupt, tool_calls)
        for call_id, tool, arguments in calls:
            posted = _propose(
                gate,
                queue,
                thread,
                call_id,
                tool,
                arguments,
                tool_schema=schemas.get(tool),
                conversation=conversation,
                **fields,
            )
            ids.append(posted.id)
    return ids


def _propose(gate, queue: str, thread: str, call_id: str, tool: str, arguments: dict, **fields):
    """Post a call (idempotent: the thread and the tool call's id are the item's key)."""
    return gate.propose_tool_call(
        {
            "queue": queue,
            "tool_call_id": f"{thread}:{call_id}" if thread else call_id,
            "tool": tool,
            "arguments": arguments,
            **fields,
        }
    )


def _answer(decision: ToolDecision) -> dict[str, Any]:
    if decision.action == "edit":
        return {"type": "edit", "edited_action": {"name": decision.tool, "args": decision.arguments}}
    if decision.action == "reject":
        answer: dict[str, Any] = {"type": "reject"}
        if decision.message:
            answer["message"] = decision.message
        return answer
    return {"type": "approve"}


def resume(
    graph,
    config,
    *,
    gate,
    queue: str,
    wait: float = 0.0,
    thread_id: str | None = None,
    force: bool = False,
):
    """Resume the graph once every call it is paused on is decided; returns what
    ``graph.invoke`` returns, or None when nothing was resumed (a call still pending, the
    graph not paused, or the decisions already applied). Call it from a webhook, a poll
    loop or a retry: it resumes at most once per pause. (One mark per pause, on its first
    call: should a process die between the mark and the resume, ``force=True`` resumes
    the still-paused graph.)"""
    from langgraph.types import Command

    thread = thread_id or config.get("configurable", {}).get("thread_id", "")
    interrupts = _interrupts(graph, config)
    if not interrupts:
        return None
    tool_calls = _last_tool_calls(graph, config)
    answers: dict[str, Any] = {}
    applied: list[str] = []  # item ids, in the pause's order
    for interrupt in interrupts:
        kind, calls = calls_of(interrupt, tool_calls)
        decisions = []
        for call_id, tool, arguments in calls:
            # The item is found by its key: posting the same call again finds it.
            posted = _propose(gate, queue, thread, call_id, tool, arguments)
            decision = gate.tool_decision(posted.id, wait=wait)
            if not decision.final:
                return None
            decisions.append(decision)
            applied.append(posted.id)
        if kind == "batched":
            answers[interrupt.id] = {"decisions": [_answer(d) for d in decisions]}
        elif kind == "per_call":
            answers[interrupt.id] = _answer(decisions[0])
        else:
            answers[interrupt.id] = decisions[0].model_dump(mode="json")
    if not gate.mark_applied(applied[0]) and not force:
        return None  # applied before: someone else resumed this pause
    return graph.invoke(Command(resume=answers), config)
