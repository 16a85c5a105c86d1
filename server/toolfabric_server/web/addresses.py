"""Which IP addresses count as public, and every way an IPv4 address can be spelled in a URL.

The SSRF guard refuses a host when any address it resolves to is not public. "Public" is
decided here and nowhere else: Python's `is_global` misses multicast, and IPv6 forms that
embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are judged by the
IPv4 address they carry, because that is where a translating network would deliver them.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges not covered (or not covered on every Python version) by the `is_*` properties.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo handled separately)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637; newer than Python's tables, found by the property test)
        "5f00::/16",  # SRv6 segment identifiers (RFC 9602), not globally reachable
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for the forms a network may translate."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address (server address is the relay)
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 0xFFFF):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def why_not_public(ip: IPAddress) -> str | None:
    """None for a public unicast address, else a short reason ("loopback", "private", …)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped IPv6 address"
        inner = embedded_ipv4(ip)
        if inner is not None:
            reason = why_not_public(inner)
            if reason:
                return f"IPv6 form of a {reason} IPv4 address ({inner})"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives here)"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    for net in _EXTRA_BLOCKED:
        if ip.version == net.version and ip in net:
            return f"non-public range {net}"
    if not ip.is_global:
        return "not globally routable"
    return None


_PART = re.compile(r"^(0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)$", re.IGNORECASE)


def parse_ipv4_spelling(host: str) -> ipaddress.IPv4Address | None:
    """Parse the inet_aton spellings browsers and libc accept: `2130706433`, `0x7f.1`, `0177.0.0.1`.

    Returns None when `host` is not an IPv4 literal at all (a name to resolve). A trailing dot
    is allowed, as resolvers ignore it.
    """
    text = host[:-1] if host.endswith(".") else host
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_PART.match(p) for p in parts):
        return None
    values = []
    for p in parts:
        if p.lower().startswith("0x"):
            values.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p.startswith("0"):
            values.append(int(p, 8))
        else:
            values.append(int(p))
    # a.b.c.d / a.b.c16 / a.b24 / a32: the last part fills the remaining bytes.
    last_bits = 8 * (5 - len(values))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        return None
    number = values[-1]
    for i, v in enumerate(values[:-1]):
        number |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IP address written as the host (any IPv4 spelling, IPv6 with or without brackets)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    return parse_ipv4_spelling(bare)
