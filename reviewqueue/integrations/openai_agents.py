"""The OpenAI Agents SDK: function tools whose calls wait for a reviewqueue decision.

    from agents import Agent, Runner, function_tool
    from reviewqueue.integrations import openai_agents as rq_agents

    refund = rq_agents.gated(function_tool(refund_fn), gate=gate, queue="refunds", wait=30)
    agent = Agent(name="support", tools=[refund])
    result = await Runner.run(agent, "refund order o-17")
    while result.interruptions:                       # not decided within `wait`, or edited/rejected
        saved = result.to_state().to_json()           # keep it anywhere (a database row)
        ...                                           # later, once reviewers decided:
        state = await rq_agents.apply_decisions(agent, saved, gate=gate, queue="refunds")
        if state is None: ...                         # still pending, or applied before
        result = await Runner.run(agent, state)

:func:`gated` sets the tool's ``needs_approval`` to a callable that posts the proposed
call (its ``call_id`` is the item's key, the tool's JSON schema checks reviewers' edits)
and waits up to ``wait`` seconds through the API's waiting gate. An approval that comes
in time lets the call run at once; anything else (no decision yet, an edit, a
rejection) pauses the run with an interruption, and :func:`apply_decisions` applies the
decisions to the saved ``RunState``: approve, approve with the reviewer's arguments
(edit: the SDK has no edited approval, so the saved state's call is rewritten before it
is restored), or reject with the reviewer's comment (else the reason) as the message
the model reads.

Exactly once: a decision is marked applied in reviewqueue (``gate.mark_applied``) before
the state is returned, and a call that runs without pausing is marked before it runs;
applying the same saved state again returns None, so the tool never runs twice.

``gate`` is :class:`reviewqueue.toolcalls.Local` or :class:`reviewqueue.client.Client`
(sync; they are called in a worker thread). Needs ``pip install "reviewqueue[openai-agents]"``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


def gated(tool, *, gate, queue: str, wait: float = 0.0, **fields):
    """``tool`` (a ``FunctionTool``) with its calls reviewed in ``queue``; returns it."""
    name, schema = tool.name, tool.params_json_schema

    async def needs_approval(ctx, params: dict[str, Any], call_id: str) -> bool:
        def ask() -> bool:
            posted = gate.propose_tool_call(
                {
                    "queue": queue,
                    "tool_call_id": call_id,
                    "tool": name,
                    "arguments": params,
                    "tool_schema": schema,
                    **fields,
                }
            )
            decision = gate.tool_decision(posted.id, wait=wait) if wait else gate.tool_decision(posted.id)
            # Approved as proposed, in time: run now (once), no pause.
            return not (decision.action == "approve" and gate.mark_applied(posted.id))

        return await asyncio.to_thread(ask)

    tool.needs_approval = needs_approval
    return tool


def _rewrite_arguments(node: Any, call_id: str, arguments: str) -> None:
    if isinstance(node, dict):
        if node.get("type") == "function_call" and node.get("call_id") == call_id and "arguments" in node:
            node["arguments"] = arguments
        for value in node.values():
            _rewrite_arguments(value, call_id, arguments)
    elif isinstance(node, list):
        for value in node:
            _rewrite_arguments(value, call_id, arguments)


async def apply_decisions(agent, saved, *, gate, queue: str, wait: float = 0.0):
    """The saved run state (a ``RunState``, its ``to_json()`` dict or ``to_string()``
    text) with reviewqueue's decisions applied to its interruptions, ready for
    ``Runner.run(agent, state)``; None while a call is still pending or when these
    decisions were applied before."""
    from agents import RunState

    if isinstance(saved, RunState):
        data = saved.to_json()
    elif isinstance(saved, str):
        data = json.loads(saved)
    else:
        data = json.loads(json.dumps(saved))  # a copy: the caller's stays as saved
    state = await RunState.from_json(agent, data)
    pending = [i for i in state.get_interruptions() if getattr(i.raw_item, "call_id", None)]
    if not pending:
        return None

    def decide() -> list | None:
        out = []
        for item in pending:
            raw = item.raw_item
            posted = gate.propose_tool_call(
                {
                    "queue": queue,
                    "tool_call_id": raw.call_id,
                    "tool": item.tool_name or raw.name,
                    "arguments": json.loads(raw.arguments or "{}"),
                }
            )
            decision = gate.tool_decision(posted.id, wait=wait) if wait else gate.tool_decision(posted.id)
            if not decision.final:
                return None
            out.append((posted.id, raw.call_id, decision))
        if not gate.mark_applied(out[0][0]):
            return None  # applied before: this saved state was resumed already
        for item_id, *_ in out[1:]:
            gate.mark_applied(item_id)
        return out

    decided = await asyncio.to_thread(decide)
    if decided is None:
        return None
    edits = {call_id: d.arguments for _, call_id, d in decided if d.action == "edit"}
    if edits:
        for call_id, arguments in edits.items():
            _rewrite_arguments(data, call_id, json.dumps(arguments, ensure_ascii=False))
            # The SDK fingerprints a call's arguments: let it register the edited call anew.
            data.get("context", {}).get("tool_invocations", {}).pop(call_id, None)
        state = await RunState.from_json(agent, data)
    by_call = {call_id: d for _, call_id, d in decided}
    for item in state.get_interruptions():
        decision = by_call.get(getattr(item.raw_item, "call_id", None))
        if decision is None:
            continue
        if decision.action == "reject":
            state.reject(item, rejection_message=decision.message or "A reviewer rejected this call.")
        else:
            state.approve(item)
    return state
