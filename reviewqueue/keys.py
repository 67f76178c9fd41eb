"""The server's secret key: encrypts webhook signing secrets at rest and keys the audit
log's hash chain, so someone who can read or write the database alone can neither
sign webhooks nor quietly rewrite the audit trail.

The key comes from ``REVIEWQUEUE_SECRET_KEY`` (set it, the same everywhere, when several
hosts run reviewqueue), or else from the file ``REVIEWQUEUE_SECRET_KEY_FILE`` (default
``data/secret.key``), created with mode 0600 on first use. Keep it out of database
backups: that is what makes it protect anything.
"""

from __future__ import annotations

import base64
import os
import threading
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import BadSetting
from .settings import Settings

_lock = threading.Lock()
PREFIX = "enc:v1:"


@lru_cache(maxsize=8)
def _key(configured: str | None, path: str) -> bytes:
    if configured:
        raw = configured.encode()
    else:
        file = Path(path)
        with _lock:
            if not file.exists():
                file.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
            raw = file.read_bytes().strip()
    try:
        valid = len(base64.urlsafe_b64decode(raw)) == 32
    except ValueError:
        valid = False
    if not valid:
        raise BadSetting(
            "REVIEWQUEUE_SECRET_KEY must be 32 url-safe base64 bytes "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        )
    return raw


def key(settings: Settings) -> bytes:
    return _key(settings.secret_key, settings.secret_key_file)


def parse(value: str) -> bytes:
    """A key given as text, checked (``BadSetting`` saying what a key looks like)."""
    return _key(value, "")


def forget() -> None:
    """Read the key file again on next use (after a rotation replaced it)."""
    _key.cache_clear()


def retired(settings: Settings) -> list[bytes]:
    """Keys retired by a rotation (rotation.py), newest last: from
    ``REVIEWQUEUE_SECRET_KEYS_RETIRED`` (comma-separated) and the file beside the key file."""
    found = [k.strip() for k in (settings.secret_keys_retired or "").split(",") if k.strip()]
    beside = Path(settings.secret_key_file + ".retired")
    if beside.exists():
        found += [line.strip() for line in beside.read_text().splitlines() if line.strip()]
    return [parse(k) for k in dict.fromkeys(found)]


def seal(text: str, settings: Settings) -> str:
    """``text`` encrypted (and authenticated) with the server key, as stored text."""
    return PREFIX + Fernet(key(settings)).encrypt(text.encode()).decode()


def unseal(stored: str, settings: Settings) -> str:
    """What :func:`seal` stored; text stored before encryption existed is returned as is."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return (
            MultiFernet([Fernet(k) for k in (key(settings), *retired(settings))])
            .decrypt(stored[len(PREFIX) :].encode())
            .decode()
        )
    except InvalidToken:
        raise ValueError(
            "a stored secret does not decrypt with this server's key (REVIEWQUEUE_SECRET_KEY)"
        ) from None
