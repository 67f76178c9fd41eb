"""The reviewer's side of the queue in one import, as the README shows it::

    from reviewqueue import review
    item = review.claim_next("support-replies", "maria")
    review.decide(item.id, "maria", {"verdict": "approve"})

Claiming and leases live in ``claims.py``; verdicts, undo and a lead's adjudication in
``decisions.py``; how several reviewers' verdicts become one in ``consensus.py``.
"""

from .claims import claim_next, release, renew
from .decisions import adjudicate, check, decide, decide_item, disputes, undo

__all__ = [
    "adjudicate",
    "check",
    "claim_next",
    "decide",
    "decide_item",
    "disputes",
    "release",
    "renew",
    "undo",
]
