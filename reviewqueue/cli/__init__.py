"""The ``reviewqueue`` command (``reviewqueue.cli:main``): see ``base.py``."""

from . import commands  # noqa: F401  (registers every command on the app)
from .base import app, main
from .servers import api_command, ui_command

__all__ = ["api_command", "app", "main", "ui_command"]
