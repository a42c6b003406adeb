"""Which addresses outbound requests (webhook deliveries) may reach (decision 32).

Only globally routable addresses, unless ``AUTHPI_ALLOW_PRIVATE_NETWORKS`` is on: a customer-supplied
URL must not turn the server into a way into its own network (loopback, private ranges, link-local
cloud metadata endpoints, …). Checked on the URL when a webhook is saved (literal addresses) and on the
resolved address when it is called (names, DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address a gateway would reach (NAT64, 6to4): judged by that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Hosts C's inet_aton (and so a resolver) reads as IPv4 though ``ipaddress`` does not: 2130706433,
# 127.1, 0x7f.0.0.1.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is globally routable (and so may be called with private networks off)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """The IP address ``host`` names literally (any notation a resolver accepts), or None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.match(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def is_local_name(host: str) -> bool:
    """Names that always mean this machine (RFC 6761)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")
