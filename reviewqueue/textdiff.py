"""Word-level comparison of a model's output with the reviewer's correction.

The edit distance is computed once, when the decision is recorded (``review.decide``
stores it on the review row), so exports read it instead of recomputing it per row.
"""

from __future__ import annotations

import difflib
import json
from typing import Any


def words(value: Any) -> list[str]:
    """The words of an output: text split on whitespace; JSON values by their text."""
    if value is None:
        return []
    return (
        value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    ).split()


def edit_distance(a: Any, b: Any) -> int:
    """Word-level Levenshtein distance."""
    x, y = words(a), words(b)
    if x == y:
        return 0
    # Trim the common prefix and suffix: corrections are usually local.
    while x and y and x[0] == y[0]:
        x, y = x[1:], y[1:]
    while x and y and x[-1] == y[-1]:
        x, y = x[:-1], y[:-1]
    if not x or not y:
        return len(x) + len(y)
    prev = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        cur = [i]
        for j, wy in enumerate(y, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wx != wy)))
        prev = cur
    return prev[-1]


def decision_distance(verdict: str, output: Any, final_output: Any) -> int | None:
    """What a decision's ``edit_distance`` is: 0 for an approval, the word distance
    between output and correction for a correction, none for a rejection."""
    if verdict == "reject":
        return None
    if verdict == "approve":
        return 0
    return edit_distance(output, final_output)


def diff_lines(old: str, new: str, *, context: int = 6) -> str:
    """A word-level diff as lines for a ``diff``-highlighted block: ``- removed``,
    ``+ added``, and unchanged runs (long ones shortened to ``context`` words each side)."""
    a, b = old.split(), new.split()
    lines = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            same = a[i1:i2]
            if len(same) > 2 * context:
                same = [*same[:context], "…", *same[-context:]]
            lines.append("  " + " ".join(same))
        if op in ("delete", "replace"):
            lines.append("- " + " ".join(a[i1:i2]))
        if op in ("insert", "replace"):
            lines.append("+ " + " ".join(b[j1:j2]))
    return "\n".join(lines) if any(line[0] in "-+" for line in lines) else ""


def word_diff(old: str, new: str) -> str:
    """A plain-text word diff: ``[-removed-]`` and ``{+added+}``."""
    a, b = old.split(), new.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(a[i1:i2])
        if op in ("delete", "replace"):
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if op in ("insert", "replace"):
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)
