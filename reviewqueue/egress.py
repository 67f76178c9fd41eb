"""Where reviewqueue may send requests: webhook targets, checked against server-side
request forgery.

A webhook URL is admin-supplied, and its answer used to be shown to admins: pointed at
``127.0.0.1:5432``, ``169.254.169.254`` or the API's own ``/metrics`` it would make the
server reach (and reveal) what only it can reach. So a target must resolve to public
addresses only: loopback, private, link-local, shared, multicast, reserved and
unspecified addresses are refused, as are cloud metadata names, unless the operator
allows private targets explicitly (``REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE=1``, for tests
and receivers inside the network). The check runs when a webhook is added and again
at every delivery, on the addresses the name resolves to then, and the request goes to
the address that was checked (so a DNS answer that changes in between cannot redirect
it). Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import invalid

METADATA_HOSTS = {
    "metadata.google.internal",
    "metadata",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
}


#: IPv6 ranges that carry an IPv4 address in them: NAT64 (the last 32 bits).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that reaches an IPv4 one is as public as that one: mapped
        # (::ffff:127.0.0.1), 6to4 (2002:7f00:1::1), Teredo's client, NAT64.
        embedded = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
        if any(address in net for net in _NAT64):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        embedded = [e for e in embedded if e is not None]
        if embedded:
            return all(public(e) for e in embedded)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"))
        or (isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fd00:ec2::/32"))
    )


def resolve(url: str, *, allow_private: bool) -> tuple[str, int, list[str]]:
    """``(host, port, addresses)`` for an http(s) URL whose every address may be reached;
    raises ``ValidationFailed`` (field ``url``) saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise invalid("url", "must not carry a user name or password (the signature authenticates us)")
    host = parts.hostname.rstrip(".").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise invalid("url", "has an invalid port") from None
    if not allow_private and host in METADATA_HOSTS:
        raise invalid("url", f"{host} is a cloud metadata service, not a webhook receiver")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise invalid("url", f"the host {host} does not resolve") from None
    addresses = sorted({info[4][0] for info in infos})
    if not allow_private:
        if any(not public(ipaddress.ip_address(a.split("%")[0])) for a in addresses):
            # Not which address: the answer would tell whoever asks what names inside the
            # network resolve to.
            raise invalid(
                "url",
                f"{host} resolves to a loopback, private, link-local or other internal address: refused "
                "(an operator can allow receivers inside the network with REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE=1)",
            )
    return host, port, addresses
