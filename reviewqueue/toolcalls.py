"""Agent tool calls approved before they run.

A queue of kind ``tool_call`` holds proposed calls. An item's output is the call,
``{"tool": name, "arguments": {...}}``; its own ``output_schema`` (built here from the
tool's argument schema) pins the tool's name and checks the arguments, at ingest and
in every correction; its input is the conversation so far; its ``external_id`` is the
call's id (``tool_call_id``), so a call posted twice (a retried agent step) is stored once.

The verdicts read as what the agent must do (:class:`ToolDecision`):

- approve: run the call as proposed;
- correct: run it with the reviewer's arguments (they validate against the tool's schema);
- reject: do not run it; the reason, and the reviewer's comment as the message back to
  the model.

A deadline fallback reads the same way (``accept`` runs the call as proposed, ``reject``
does not) with ``source = "deadline"``; items nobody decided are ``pending``.

Adapters for agent frameworks live in :mod:`reviewqueue.integrations`; they speak to
reviewqueue through a *gate*: an object with ``propose_tool_call(call) -> item id`` and
``tool_decision(item_id, wait=seconds) -> ToolDecision``. :class:`Local` is the
in-process gate (one database); :class:`reviewqueue.client.Client` is the HTTP one.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import structured
from .errors import ValidationFailed
from .schemas import (
    MAX_DEADLINE_SECONDS,
    ContextSource,
    ItemIn,
    ItemOut,
    Moment,
    Probability,
    QueueName,
    ShortText,
    SubmitResult,
    WholeNumber,
)
from .vocab import FINAL, Source, Verdict

#: Every output of a tool_call queue: the call.
CALL_SCHEMA = {
    "type": "object",
    "required": ["tool", "arguments"],
    "properties": {"tool": {"type": "string", "minLength": 1}, "arguments": {"type": "object"}},
    "additionalProperties": False,
}
CALL = structured.validator(CALL_SCHEMA)

#: How long an agent step may wait in one call of :meth:`Local.tool_decision`.
MAX_WAIT = 60.0


class ToolCallIn(BaseModel):
    """A proposed tool call, posted before it runs (``POST /v1/tool-calls``)."""

    model_config = ConfigDict(extra="forbid")

    queue: QueueName
    tool_call_id: ShortText = Field(description="The call's id: posting it again finds the same item.")
    tool: ShortText = Field(description="The tool's name.")
    arguments: dict[str, Any] = Field(description="The arguments the model proposes.")
    tool_schema: dict[str, Any] | None = Field(
        default=None,
        description="The tool's argument schema (JSON Schema): the proposed arguments and a "
        "reviewer's edited ones must validate against it.",
    )
    conversation: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=1000,
        description='The conversation so far, as messages ({"role": ..., "content": ...}): the '
        "reviewer reads it, and the chat export replays it.",
    )
    confidence: Probability = Field(
        default=0.0,
        description="How sure the agent is; 0 (the default) sends every call to review unless the "
        "queue's threshold is 0.",
    )
    model: ShortText | None = None
    model_version: ShortText | None = None
    context: list[ContextSource] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: WholeNumber = Field(default=0, ge=-1000, le=1000)
    deadline: Moment | None = None
    deadline_seconds: WholeNumber | None = Field(default=None, ge=1, le=MAX_DEADLINE_SECONDS)

    @field_validator("tool_schema")
    @classmethod
    def _schema(cls, value):
        if value:
            structured.check_schema(value)
        return value or None


def call_schema(tool: str, tool_schema: dict | None) -> dict:
    """The item's schema: this tool, and arguments the tool takes."""
    return {
        "type": "object",
        "required": ["tool", "arguments"],
        "properties": {"tool": {"const": tool}, "arguments": tool_schema or {"type": "object"}},
        "additionalProperties": False,
    }


def to_item(call: ToolCallIn | dict[str, Any]) -> ItemIn:
    if not isinstance(call, ToolCallIn):
        try:
            call = ToolCallIn.model_validate(call)
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(exc) from None
    try:
        return _item_of(call)
    except ValidationError as exc:  # what only the item checks (deadline and deadline_seconds both...)
        raise ValidationFailed.from_pydantic(exc) from None


def _item_of(call: ToolCallIn) -> ItemIn:
    return ItemIn(
        queue=call.queue,
        external_id=call.tool_call_id,
        input=call.conversation,
        output={"tool": call.tool, "arguments": call.arguments},
        output_schema=call_schema(call.tool, call.tool_schema),
        confidence=call.confidence,
        model=call.model,
        model_version=call.model_version,
        context=call.context,
        metadata=call.metadata,
        priority=call.priority,
        deadline=call.deadline,
        deadline_seconds=call.deadline_seconds,
    )


class ToolDecision(BaseModel):
    """What the agent must do with a proposed call."""

    item_id: str
    tool_call_id: str | None
    tool: str
    #: ``pending`` (nobody decided yet), ``approve`` (run as proposed), ``edit`` (run
    #: with ``arguments``, the reviewer's), ``reject`` (do not run).
    action: Literal["pending", "approve", "edit", "reject"]
    #: The arguments to run the tool with (None unless approve or edit).
    arguments: dict[str, Any] | None = None
    proposed_arguments: dict[str, Any]
    reason: str | None = None
    #: For the model, on reject: the reviewer's comment, else the reason.
    message: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    #: reviewer, deadline (the queue's fallback) or threshold (auto-accepted).
    source: Source | None = None

    @property
    def final(self) -> bool:
        return self.action != "pending"


def decision_of(item: ItemOut) -> ToolDecision:
    call = item.output if isinstance(item.output, dict) else {}
    proposed = call.get("arguments") or {}
    base = {
        "item_id": item.id,
        "tool_call_id": item.external_id,
        "tool": call.get("tool", ""),
        "proposed_arguments": proposed,
    }
    if item.status not in FINAL:
        return ToolDecision(action="pending", **base)
    d = item.decision
    if d is None:  # auto-accepted: above the queue's threshold
        return ToolDecision(action="approve", arguments=proposed, source=Source.THRESHOLD, **base)
    who = {"decided_by": d.reviewer, "decided_at": d.decided_at, "source": d.source}
    if d.verdict == Verdict.REJECT:
        return ToolDecision(action="reject", reason=d.reason, message=d.comment or d.reason, **who, **base)
    if d.verdict == Verdict.CORRECT and isinstance(d.final_output, dict):
        edited = d.final_output.get("arguments")
        if edited != proposed:
            return ToolDecision(action="edit", arguments=edited, **who, **base)
    return ToolDecision(action="approve", arguments=proposed, **who, **base)


def arguments_diff(before: dict | None, after: dict | None) -> list[dict[str, Any]]:
    """Per changed argument path: ``{"path", "before", "after"}`` (leaf paths, as
    ``changed_fields``; a removed value's ``after`` is None)."""
    a, b = structured.leaves(before or {}), structured.leaves(after or {})
    return [
        {"path": p, "before": a.get(p), "after": b.get(p)}
        for p in structured.changed(before or {}, after or {})
    ]


def mark_applied(item_id: str, *, engine=None) -> bool:
    """Record that the agent applied the call's decision (ran the tool, or did not);
    True the first time only. Adapters mark before they run a tool, so a decision
    delivered again, or two workers resuming one run, never run it twice."""
    from . import clock, items, store
    from .store import queries

    with store.write(engine) as tx:
        if queries.MARK_APPLIED.run(tx, {"item_id": item_id, "now": clock.now()}):
            return True
    items.get(item_id, engine=engine)  # NotFound for an unknown id
    return False


class Local:
    """The in-process gate: proposes calls and reads decisions in this process's database."""

    def __init__(self, engine=None, *, poll: float = 0.2):
        self.engine, self.poll = engine, poll

    def propose_tool_call(self, call: ToolCallIn | dict[str, Any]) -> SubmitResult:
        from . import ingest

        return ingest.submit(to_item(call), engine=self.engine)

    def mark_applied(self, item_id: str) -> bool:
        return mark_applied(item_id, engine=self.engine)

    def tool_decision(self, item_id: str, wait: float = 0.0) -> ToolDecision:
        """The decision on the call, waiting up to ``wait`` seconds for one."""
        from . import items

        until = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
        while True:
            decision = decision_of(items.get(item_id, engine=self.engine))
            if decision.final or time.monotonic() >= until:
                return decision
            time.sleep(min(self.poll, max(0.0, until - time.monotonic())))


__all__ = [
    "CALL_SCHEMA",
    "Local",
    "ToolCallIn",
    "ToolDecision",
    "arguments_diff",
    "call_schema",
    "decision_of",
    "mark_applied",
    "to_item",
]
