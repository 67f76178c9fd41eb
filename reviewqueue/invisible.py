"""Characters that change what a reader sees without being seen themselves.

Direction controls (U+202A-202E, U+2066-2069, U+200E/200F) reorder the text around
them: ``"Refund \\u202e!devorppa\\u202c"`` displays as "Refund approved!". Zero-width
characters (U+200B-200D, U+2060, U+FEFF) hide inside words. Wherever model- or
app-supplied text is shown to a reviewer, :func:`reveal` replaces each with a visible
marker such as ``⟨U+202E⟩``, and :func:`found` says whether an item needs a warning.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = (
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
)
_PATTERN = re.compile("[" + "".join(HIDDEN) + "]")


def _marker(match: re.Match) -> str:
    return f"⟨U+{ord(match.group()):04X}⟩"


def reveal(value: Any) -> Any:
    """``value`` with every hidden character shown as ``⟨U+XXXX⟩``; dicts and lists are
    revealed throughout (keys too)."""
    if isinstance(value, str):
        return _PATTERN.sub(_marker, value) if _PATTERN.search(value) else value
    if isinstance(value, dict):
        return {reveal(k): reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v) for v in value]
    return value


def found(*values: Any) -> set[str]:
    """The hidden characters in ``values`` (searched throughout), as ``U+XXXX`` names."""
    seen: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            seen.update(f"U+{ord(c):04X}" for c in _PATTERN.findall(v))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    for value in values:
        walk(value)
    return seen
