"""Who is the client: the peer address, or what a trusted proxy says in X-Forwarded-For.

Sign-in limits count failures per client address (users.py). Behind a reverse proxy
the peer is the proxy, so every user would share its address (21 failed sign-ins by
anyone locked everyone out); believing X-Forwarded-For from anyone would let an
attacker name a fresh address for every guess. So X-Forwarded-For is believed only
when the peer is one of ``REVIEWQUEUE_TRUSTED_PROXIES`` (addresses or CIDRs), and read
from the right: the first address that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

log = logging.getLogger(__name__)
_warned = False

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """``REVIEWQUEUE_TRUSTED_PROXIES`` parsed; raises ValueError naming a bad entry."""
    nets = []
    for part in spec.replace(" ", ",").split(","):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"REVIEWQUEUE_TRUSTED_PROXIES: {part!r} is not an address or CIDR (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(nets)


def _address(text: str | None):
    if not text:
        return None
    text = text.strip().strip("[]")
    if text.count(":") == 1 and "." in text:  # 203.0.113.5:51234
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _trusted(address, nets: tuple[Network, ...]) -> bool:
    return address is not None and any(address in net for net in nets)


def client_address(peer: str | None, forwarded_for: str | None, trusted_spec: str) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy and
    X-Forwarded-For names one further out."""
    nets = trusted_networks(trusted_spec or "")
    address = _address(peer)
    if address is None:
        return peer
    if not _trusted(address, nets):
        if forwarded_for and address.is_loopback:
            _warn_untrusted_loopback(str(address))
        return str(address)
    for hop in reversed([h for h in (forwarded_for or "").split(",") if h.strip()]):
        hop_address = _address(hop)
        if hop_address is None:
            break  # garbage: stop believing the header here
        if not _trusted(hop_address, nets):
            return str(hop_address)
        address = hop_address
    return str(address)


def _warn_untrusted_loopback(peer: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "requests come through a proxy at %s (they carry X-Forwarded-For), which is not trusted: every "
            "client counts as %s in the sign-in limits. Set REVIEWQUEUE_TRUSTED_PROXIES=%s to count real clients",
            peer,
            peer,
            peer,
        )
