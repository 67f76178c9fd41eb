"""A structured output (structured.py) reviewed field by field on the review page.

Every leaf of the output is a row: its path, the model's confidence, what the schema
allows there (one of an enum's values, a number, true or false), and a text box. (Select
and check boxes were tried: a select box's choice by keys straight after Tab was lost
now and then; typing the value is as fast and never lost.)
The flagged fields (below their threshold) come first, marked, and are the only boxes
that take the keyboard: Tab from anywhere on the page goes to the first of them
(ui/keys.py) and on from one to the next, so no key is spent on the fields the model was
sure of. Those are read-only until "Unlock all fields" (L). Ctrl+Enter shows the changes
per field, again saves them; the correction is checked against the schema first
(decisions.check), and a wrong field is named.

A box holds the field's value as text: a string as itself, anything else as JSON
(``119.0``, ``true``, ``null``); what is typed goes back the same way. Paths and values
are the app's and the model's data: shown with st.text and in boxes, never in labels
(labels render markdown), so a box's label is its number.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import streamlit as st

from .. import structured
from .common import plain

#: Every box's aria-label starts with one of these (ui/keys.py finds the flagged ones).
FLAGGED, FIELD = "Flagged field", "Field"


def applies(q, item: dict) -> bool:
    """A structured output to show as fields: the queue has a schema or the item flagged
    fields, its output is a non-empty object, and it is not a tool call."""
    return (
        getattr(q, "kind", "text") != "tool_call"
        and isinstance(item.get("output"), dict)
        and bool(item["output"])
        and (bool(getattr(q, "output_schema", None)) or item.get("flagged_fields") is not None)
    )


def _rows(item: dict) -> list[tuple[str, Any, bool]]:
    """(path, value, flagged): flagged fields first, in the order they were flagged."""
    leaves = structured.leaves(item["output"])
    flagged = [p for p in item.get("flagged_fields") or [] if p in leaves]
    return [(p, leaves[p], True) for p in flagged] + [
        (p, v, False) for p, v in leaves.items() if p not in flagged
    ]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def key(item: dict, n: int) -> str:
    return f"rq_field_{item['id']}_{n}"


def _sub(schema: dict | None, path: str) -> dict:
    """The part of a (simple) schema that describes ``path``; {} when it cannot tell."""
    sub: Any = schema or {}
    for t in structured.parse_path(path):
        if not isinstance(sub, dict):
            return {}
        if isinstance(t, int):
            prefix = sub.get("prefixItems")
            sub = prefix[t] if isinstance(prefix, list) and t < len(prefix) else sub.get("items")
        else:
            sub = (sub.get("properties") or {}).get(t)
    return sub if isinstance(sub, dict) else {}


def _expected(schema: dict | None, path: str) -> str:
    """What the schema allows at ``path``, in a few words ("one of EUR, USD",
    "true or false", "a number"), for simple schemas; "" when it cannot tell."""
    sub = _sub(schema, path)
    if isinstance(sub.get("enum"), list):
        return "one of " + ", ".join(_text(v) for v in sub["enum"][:12])
    kind = sub.get("type")
    return {"boolean": "true or false", "number": "a number", "integer": "a whole number"}.get(kind, "")


def render(item: dict, *, unlocked: bool, schema: dict | None = None) -> None:
    confidence = item.get("field_confidence") or {}
    rows = _rows(item)
    flagged = sum(1 for *_, f in rows if f)
    st.text(
        f"{flagged} flagged field(s) first: Tab goes from one to the next, type to replace. "
        + ("All fields are unlocked." if unlocked else "The others are read-only (L unlocks them).")
    )
    for n, (path, value, is_flagged) in enumerate(rows):
        left, right = st.columns([2, 3], gap="small", vertical_alignment="center")
        sure = confidence.get(path)
        expected = _expected(schema, path)
        left.text(
            ("⚑ " if is_flagged else "  ")
            + plain(path)
            + (f"  ({sure:.2f})" if sure is not None else "")
            + (f"\n   {plain(expected)}" if expected else "")
        )
        right.text_input(
            f"{FLAGGED if is_flagged else FIELD} {n + 1}",
            _text(value),
            key=key(item, n),
            disabled=not (is_flagged or unlocked),
            label_visibility="collapsed",
        )


def collect(item: dict) -> tuple[Any, list[str]]:
    """(the corrected output, the paths changed) from the boxes; ``ValueError`` naming
    the field whose text is not a value of its kind."""
    out = copy.deepcopy(item["output"])
    changed = []
    for n, (path, value, _) in enumerate(_rows(item)):
        typed = st.session_state.get(key(item, n))
        if typed is None or typed == _text(value):
            continue
        if isinstance(value, str):
            new = typed
        else:
            try:
                new = json.loads(typed)
            except ValueError:
                raise ValueError(
                    f"{path}: {typed!r} is not a {type(value).__name__ if value is not None else 'JSON'} value "
                    "(numbers as 119.5, true or false, null)"
                ) from None
        if new == value:
            continue
        _set(out, structured.parse_path(path), new)
        changed.append(path)
    return out, changed


def _set(target: Any, tokens: list, value: Any) -> None:
    for t in tokens[:-1]:
        target = target[t]
    target[tokens[-1]] = value


def diff_lines(item: dict, corrected: Any, changed: list[str]) -> str:
    lines = []
    for path in changed:
        tokens = structured.parse_path(path)
        before = structured.lookup(item["output"], tokens)[1]
        after = structured.lookup(corrected, tokens)[1]
        lines.append(f"{path}: {_text(before)} → {_text(after)}")
    return "\n".join(lines)
