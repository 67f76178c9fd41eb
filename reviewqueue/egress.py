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


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
        blocked = [a for a in addresses if not public(ipaddress.ip_address(a.split("%")[0]))]
        if blocked:
            raise invalid(
                "url",
                f"{host} resolves to {', '.join(blocked)}: loopback, private, link-local and "
                "other internal addresses are refused (an operator can allow them with "
                "REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE=1)",
            )
    return host, port, addresses
