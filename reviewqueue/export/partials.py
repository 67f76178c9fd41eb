"""Files under ``OUT/.partial``: who wrote them, and whether the writer is gone.

A partial file's name ends ``.<host>.<pid>`` of the process writing it. Only files of
this host are judged by their process (a host can tell whether its own process is
alive, never another host's); files another host left are removed once they are a day
old. Records of runs never depend on this (``run.recover`` reads the database).
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
#: Another host's leftovers are removed after this long.
FOREIGN_MAX_AGE = 86400


def suffix() -> str:
    return f"{HOST}.{os.getpid()}"


def abandoned(path: Path) -> bool:
    """Whether the process that wrote ``path`` is gone (unknown names: never)."""
    parts = path.name.rsplit(".", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return False
    host, pid = parts[1], int(parts[2])
    if host != HOST:
        try:
            return time.time() - path.stat().st_mtime > FOREIGN_MAX_AGE
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
