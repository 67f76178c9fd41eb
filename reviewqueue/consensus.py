"""When several reviewers decide one item: do they agree, and what is the final decision?

Pure functions over decisions (anything with ``verdict``, ``final_label``,
``final_output`` and ``reason``); ``decisions.py`` calls them inside the decision's
transaction.

- Two decisions **agree** when their verdicts match and, on classification queues, their
  final labels match too (:func:`key`).
- **majority**: more than half of the required decisions share a key; **unanimous**: all
  of them do.
- Free-text corrections that agree on the verdict must also give the same text (after
  whitespace is normalised): the item's reference output is one text. Different texts
  go to a lead, who picks one or writes their own.
- The final decision is the first decision (in time) of the agreeing group; the item's
  ``agreement`` is the share of its decisions that agree with the final one.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, NamedTuple

from .vocab import Consensus, Verdict


def key(decision, classification: bool) -> tuple:
    """What two decisions must share to agree."""
    if classification and decision.verdict != Verdict.REJECT:
        return (decision.verdict, decision.final_label)
    return (decision.verdict,)


def normalised(value: Any) -> Any:
    """Text compared the way people read it: runs of whitespace are one space."""
    return " ".join(value.split()) if isinstance(value, str) else value


class Outcome(NamedTuple):
    #: The decision that becomes final; none: the item goes to a lead.
    final: Any
    #: Share of the decisions agreeing with the final one (none while disputed).
    agreement: float | None
    #: Why it is disputed, in words ("2 approve, 1 reject"; "different corrections").
    why: str | None = None


def settle(decisions: list, rule: Consensus | str, classification: bool) -> Outcome:
    """The outcome of the required decisions on one item."""
    keys = [key(d, classification) for d in decisions]
    counts = Counter(keys)
    top, n = counts.most_common(1)[0]
    needed = len(decisions) if rule == Consensus.UNANIMOUS else len(decisions) // 2 + 1
    if n < needed or list(counts.values()).count(n) > 1:
        return Outcome(None, None, _tally(counts))
    group = [d for d, k in zip(decisions, keys, strict=True) if k == top]
    if top[0] == Verdict.CORRECT:
        texts = {_text(d.final_output) for d in group}
        if len(texts) > 1:
            return Outcome(None, None, f"{len(group)} corrections give {len(texts)} different texts")
    return Outcome(group[0], n / len(decisions))


def agreement_with(decisions: list, final, classification: bool) -> float:
    """Share of ``decisions`` that agree with ``final`` (a lead's adjudication)."""
    if not decisions:
        return 1.0
    target = key(final, classification)
    return sum(key(d, classification) == target for d in decisions) / len(decisions)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return normalised(value)
    return json.dumps(value, sort_keys=True)  # a JSON output: the same value, whatever the key order


def _tally(counts: Counter) -> str:
    return ", ".join(f"{n} {' '.join(str(p) for p in k if p is not None)}" for k, n in counts.most_common())
