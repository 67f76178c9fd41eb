"""Structured outputs: JSON validated by the queue's schema, judged field by field.

- A queue may declare ``output_schema`` (a JSON Schema, draft 2020-12, checked with the
  ``jsonschema`` package when it is set). Every output posted to it must validate (422
  naming the path otherwise), and so must every correction.
- An item may carry ``field_confidence``: JSON paths of its output (``total``,
  ``line_items[0].amount``) to numbers in [0, 1]. A path that is not in the output is
  refused. A field below its threshold (``field_thresholds[path]``, else the queue's
  ``threshold``) sends the item to review (route ``field_threshold``) and is stored in
  ``flagged_fields``: what the reviewer must look at. The item's ``confidence`` may be
  left out: it is then the lowest field confidence. The audit sample works as for any
  item.
- A correction records the leaf paths it changed (``changed_fields``).

Pure functions: no database, no clock.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"[^.\[\]]+(?:\[\d+\])*(?:\.[^.\[\]]+(?:\[\d+\])*)*")
#: The most field confidences one item may carry.
MAX_FIELDS = 1000


def parse_path(path: str) -> list[str | int]:
    """``"line_items[0].amount"`` → ``["line_items", 0, "amount"]``; ``ValueError`` if malformed."""
    if not isinstance(path, str):
        raise ValueError(f"{path!r} is not a field path (e.g. total, line_items[0].amount)")
    return list(_parsed(path))


@lru_cache(maxsize=8192)
def _parsed(path: str) -> tuple[str | int, ...]:
    # Every item of a structured queue names the same paths: parsed once each.
    if not _PATH.fullmatch(path):
        raise ValueError(f"{path!r} is not a field path (e.g. total, line_items[0].amount)")
    return tuple(name if name else int(index) for name, index in _TOKEN.findall(path))


def path_of(tokens) -> str:
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else str(t))
    return out


def lookup(value: Any, tokens: list[str | int]) -> tuple[bool, Any]:
    """``(found, the value at tokens)``."""
    for t in tokens:
        if isinstance(t, int):
            if not isinstance(value, list) or t >= len(value):
                return False, None
        elif not isinstance(value, dict) or t not in value:
            return False, None
        value = value[t]
    return True, value


def check_schema(schema: Any) -> None:
    """``ValueError`` saying what is wrong with a JSON Schema."""
    if not isinstance(schema, dict):
        raise ValueError("must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = path_of(list(exc.absolute_path))
        raise ValueError(f"not a valid JSON Schema{' at ' + where if where else ''}: {exc.message}") from None


class Validator:
    """A schema's two validators: ``jsonschema_rs`` (compiled, Rust) says quickly whether a
    value is valid, which is nearly always; only an invalid value is walked again by the
    ``jsonschema`` package, for its messages and paths. (The pure-Python walk alone was
    three quarters of a structured ingest's time.) Formats are not asserted by either,
    as JSON Schema 2020-12 has it by default."""

    __slots__ = ("fast", "slow")

    def __init__(self, schema: dict):
        self.slow = Draft202012Validator(schema)
        try:
            import jsonschema_rs

            self.fast = jsonschema_rs.Draft202012Validator(schema, validate_formats=False).is_valid
        except Exception:  # not installed, or a schema it cannot compile: the slow walk only
            self.fast = None

    def iter_errors(self, value: Any):
        if self.fast is not None and self.fast(value):
            return iter(())
        return self.slow.iter_errors(value)


@lru_cache(maxsize=64)
def _validator(schema_text: str) -> Validator:
    return Validator(json.loads(schema_text))


def validator(schema: dict | None) -> Validator | None:
    """A compiled validator for ``schema`` (cached by its text)."""
    if not schema:
        return None
    return _validator(json.dumps(schema, sort_keys=True))


def errors(check: Validator, value: Any, loc: list) -> list[dict[str, Any]]:
    """Where ``value`` breaks the schema, as 422 error entries under ``loc``, the first 20."""
    found = sorted(check.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))[:20]
    return [
        {
            "loc": [*loc, *e.absolute_path],
            "msg": f"{path_of(list(e.absolute_path)) or 'the output'}: {e.message}",
            "type": "schema",
        }
        for e in found
    ]


def field_problems(output: Any, field_confidence: dict[str, float], loc: list) -> list[dict[str, Any]]:
    """Paths of ``field_confidence`` that are malformed or not in ``output``."""
    problems = []
    for path in field_confidence:
        try:
            found, _ = lookup(output, _parsed(path) if isinstance(path, str) else parse_path(path))
        except ValueError as exc:
            problems.append({"loc": [*loc, path], "msg": str(exc), "type": "value_error"})
            continue
        if not found:
            problems.append(
                {"loc": [*loc, path], "msg": f"{path} is not a field of the output", "type": "value_error"}
            )
    return problems


def flagged(field_confidence: dict[str, float], thresholds: dict[str, float], default: float) -> list[str]:
    """The paths below their threshold, in the output's order of mention."""
    return [p for p, c in field_confidence.items() if c < float(thresholds.get(p, default))]


def leaves(value: Any, prefix: tuple = ()) -> dict[str, Any]:
    """Every leaf of a JSON value by its path (an empty object or array is a leaf)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, (*prefix, k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(leaves(v, (*prefix, i)))
        return out
    return {path_of(list(prefix)): value}


def changed(before: Any, after: Any) -> list[str]:
    """The leaf paths whose value a correction changed, added or removed, in path order
    (PostgreSQL's jsonb does not keep an object's key order, so neither can this)."""
    a, b = leaves(before), leaves(after)
    return sorted(
        (p for p in dict.fromkeys([*a, *b]) if a.get(p, _MISSING) != b.get(p, _MISSING)), key=_order
    )


def _order(path: str) -> list[tuple[int, Any]]:
    try:
        return [(0, t) if isinstance(t, int) else (1, t) for t in parse_path(path)] if path else []
    except ValueError:
        return [(2, path)]


_MISSING = object()
