"""Time-ordered unique ids (UUIDv7, RFC 9562) as canonical text.

Sorting ids as text sorts items by creation time, which keeps inserts at the end of
the primary-key index and gives a stable tie-break ("oldest first") for free.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7() -> str:
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or earlier, if the clock stepped back) millisecond: keep ids
            # monotonic within this process with the 12-bit counter.
            _seq += 1
            if _seq > 0xFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    h = f"{(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand:032x}"
    # Formatted by hand: uuid.UUID() costs more than generating the id.
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_many(n: int) -> list[str]:
    """``n`` ids at once, in order: one clock read and one call for randomness, which
    matters when bulk ingest makes a hundred thousand of them."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            seq = _seq + 1
        else:
            seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        # Spend the 12-bit counter, moving to the next millisecond when it runs out.
        end_ms, end_seq = ms + (seq + n - 1) // 0x1000, (seq + n - 1) % 0x1000
        _last_ms, _seq = end_ms, end_seq
    rand = os.urandom(8 * n)
    out = []
    mask = (1 << 62) - 1
    for k in range(n):
        s = seq + k
        m = (ms + s // 0x1000) & ((1 << 48) - 1)
        r = int.from_bytes(rand[8 * k : 8 * k + 8], "big") & mask
        h = f"{m << 80 | 0x7 << 76 | (s % 0x1000) << 64 | 0b10 << 62 | r:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
