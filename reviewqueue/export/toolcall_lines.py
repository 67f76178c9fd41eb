"""Tool-call datasets (toolcalls.py): what the agent proposed and what a person made of it.

- ``tool-calls-jsonl``: one line per decided tool call: the conversation, the proposed
  call, the decision (approve, edit, reject), the edited arguments and their diff, the
  reason and message, the reviewer and how long the call waited. Items of other queues
  are left out.
- ``chat-jsonl`` lines of tool calls replay the conversation and end with the assistant
  making the call as the reviewer approved or edited it, in the OpenAI chat format
  (``tool_calls`` with JSON-encoded ``arguments``): what a model should have done.
  Rejected calls are left out of the chat file (there is no right call to teach); they
  are in ``tool-calls-jsonl``.

A row is a tool call when its output is ``{"tool": ..., "arguments": {...}}``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..toolcalls import arguments_diff
from .columns import COLUMNS

_AT = {c: i for i, c in enumerate(COLUMNS)}


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # plain text (CSV and chat rows carry a text value as itself)


def call_of(r: tuple) -> dict | None:
    """The proposed call of a row, or None if the row is not a tool call."""
    raw = r[_AT["output"]]
    if not isinstance(raw, str) or not raw.startswith("{"):
        return None
    out = _load(raw)
    if isinstance(out, dict) and set(out) == {"tool", "arguments"} and isinstance(out["arguments"], dict):
        return out
    return None


def _seconds(r: tuple) -> float | None:
    try:
        start = datetime.fromisoformat(r[_AT["created_at"]])
        end = datetime.fromisoformat(r[_AT["decided_at"]])
    except (TypeError, ValueError):
        return None
    return round((end - start).total_seconds(), 3)


def _decision(r: tuple, call: dict) -> tuple[str, dict | None]:
    verdict = r[_AT["verdict"]]
    if verdict == "reject":
        return "reject", None
    reference = _load(r[_AT["reference_output"]])
    edited = reference.get("arguments") if isinstance(reference, dict) else None
    if verdict == "correct" and edited is not None and edited != call["arguments"]:
        return "edit", edited
    return "approve", None


def tool_call_lines(r: tuple) -> list[str]:
    call = call_of(r)
    if call is None:
        return []
    decision, edited = _decision(r, call)
    record = {
        "item_id": r[_AT["item_id"]],
        "queue": r[_AT["queue"]],
        "tool_call_id": r[_AT["external_id"]],
        "model": r[_AT["model"]],
        "model_version": r[_AT["model_version"]],
        "context": {"conversation": _load(r[_AT["input"]]), "sources": _load(r[_AT["context"]]) or []},
        "proposed_call": call,
        "decision": decision,
        "edited_arguments": edited,
        "arguments_diff": arguments_diff(call["arguments"], edited) if edited is not None else [],
        "reason": r[_AT["reason"]],
        "message": r[_AT["comment"]],
        "reviewer": r[_AT["reviewer"]],
        "created_at": r[_AT["created_at"]],
        "decided_at": r[_AT["decided_at"]],
        "latency_seconds": _seconds(r),
        "after_deadline": bool(r[_AT["after_deadline"]]),
    }
    return [json.dumps(record, ensure_ascii=False) + "\n"]


def chat_tool_call_line(r: tuple, call: dict) -> str:
    decision, edited = _decision(r, call)
    if decision == "reject":
        return ""
    conversation = _load(r[_AT["input"]])
    messages = [m for m in conversation if isinstance(m, dict)] if isinstance(conversation, list) else []
    if not messages and conversation:
        messages = [{"role": "user", "content": str(conversation)}]
    arguments = edited if edited is not None else call["arguments"]
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": r[_AT["external_id"]] or r[_AT["item_id"]],
                    "type": "function",
                    "function": {
                        "name": call["tool"],
                        "arguments": json.dumps(arguments, ensure_ascii=False),
                    },
                }
            ],
        }
    )
    meta = {k: r[_AT[k]] for k in ("item_id", "queue", "verdict", "model", "model_version")}
    meta["decision"] = decision
    return json.dumps({"messages": messages, "metadata": meta}, ensure_ascii=False) + "\n"
