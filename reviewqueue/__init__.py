"""reviewqueue: the human-review queue that takes AI pilots to production."""

__version__ = "0.1.0"
