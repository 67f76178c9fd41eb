"""Domain modules for the command line, imported when a command first uses them.

``reviewqueue --help`` and ``reviewqueue version`` import nothing of the domain (the
database layer, pydantic, argon2 and the PII detectors cost over a second at start);
each command pays only for what it calls.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class Lazy:
    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


def lazy(*names: str) -> tuple[Lazy, ...]:
    return tuple(Lazy(f"reviewqueue.{n}") for n in names)
