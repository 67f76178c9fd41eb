"""The reviewer's side of the queue in one import, as the README shows it::

    from reviewqueue import review
    item = review.claim_next("support-replies", "maria")
    review.decide(item.id, "maria", {"verdict": "approve"})

Claiming and leases live in ``claims.py``, verdicts and undo in ``decisions.py``.
"""

from .claims import claim_next, release, renew
from .decisions import check, decide, decide_item, undo

__all__ = ["check", "claim_next", "decide", "decide_item", "release", "renew", "undo"]
