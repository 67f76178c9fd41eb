"""reviewqueue: the human-review queue that takes AI pilots to production."""

__version__ = "0.1.0"

# Registers the webhook outbox as a decision listener, so every way of deciding (UI,
# API, Python) notifies the queue's webhooks in the decision's own transaction.
from . import webhooks as _webhooks  # noqa: E402,F401
