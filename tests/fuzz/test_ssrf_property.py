"""The SSRF guard as a property: every spelling of a non-public address is refused, every public one is not.

Addresses are generated from the IANA special-purpose registries (the ranges marked not globally
reachable, plus loopback, multicast and the IPv6 forms that carry an IPv4 address), written down
here independently of web/addresses.py; spellings are generated too: decimal, octal and
hex integers, dotted-short forms, per-part radix mixes, trailing dots, IPv4-mapped / compatible /
NAT64 / 6to4 / Teredo IPv6 with zone ids and zero-padding, fullwidth digits and ideographic dots
(IDNA), percent-encoded hosts, userinfo and fragment tricks, odd-case schemes and explicit ports.

Names are "resolved" the way libc reads a numeric host (AI_NUMERICHOST: no DNS traffic), so a
spelling the guard mistook for a name still meets the address libc would connect to.
`make fuzz` runs these with the `fuzz` profile (TOOLFABRIC_FUZZ_EXAMPLES examples each).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from toolfabric_server.web.errors import BlockedURL, HostNotFound, InvalidURL
from toolfabric_server.web.guard import Guard
from toolfabric_server.web.settings import FetchSettings

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("TOOLFABRIC_FUZZ_EXAMPLES", "100000")),
                          deadline=None, suppress_health_check=list(HealthCheck))
PROFILE = settings.get_profile(os.environ.get("TOOLFABRIC_FUZZ_PROFILE", "ci"))

# IANA IPv4 special-purpose registry: not globally reachable (plus multicast and broadcast).
NON_PUBLIC_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
# IANA IPv6 special-purpose registry: not globally reachable (the IPv4-carrying forms are generated below).
NON_PUBLIC_V6 = [ipaddress.IPv6Network(n) for n in (
    "::1/128", "::/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]
# Ranges whose addresses the guard judges by the IPv4 address inside; public IPv6 is drawn outside them.
CARRIERS_V6 = [ipaddress.IPv6Network(n) for n in ("2001::/32", "2002::/16", "64:ff9b::/96", "::/96", "::ffff:0:0/96")]


class NumericOnly:
    """Reads a host as libc does with AI_NUMERICHOST (inet_aton forms included); names are not found."""

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError) as exc:
            raise HostNotFound(f"{host!r} is a name (no DNS here): {exc}") from None
        return [str(info[4][0]) for info in infos]


GUARD = Guard(FetchSettings(), NumericOnly())


def in_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> st.SearchStrategy[int]:
    return st.integers(int(net.network_address), int(net.broadcast_address))


def outside(universe: str, excluded: list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network]) -> list:  # type: ignore[type-arg]
    """The networks covering `universe` minus every excluded network."""
    remaining = [ipaddress.ip_network(universe)]
    for hole in excluded:
        remaining = [piece for net in remaining
                     for piece in (net.address_exclude(hole) if hole.subnet_of(net) else  # type: ignore[arg-type]
                                   ([] if net.subnet_of(hole) else [net]))]  # type: ignore[arg-type]
    return remaining


non_public_v4 = st.sampled_from(NON_PUBLIC_V4).flatmap(in_network).map(ipaddress.IPv4Address)
public_v4 = st.sampled_from(outside("0.0.0.0/0", NON_PUBLIC_V4)).flatmap(in_network).map(ipaddress.IPv4Address)
non_public_v6 = st.sampled_from(NON_PUBLIC_V6).flatmap(in_network).map(ipaddress.IPv6Address)
public_v6 = st.sampled_from(outside("2000::/3", NON_PUBLIC_V6 + CARRIERS_V6)).flatmap(in_network).map(
    ipaddress.IPv6Address)


@st.composite
def v4_part(draw: st.DrawFn, value: int) -> str:
    """One inet_aton part in decimal, octal or hex, with optional zero padding and case."""
    radix = draw(st.sampled_from(["dec", "oct", "hex"]))
    if radix == "dec":
        return str(value)
    if radix == "oct":
        return "0" * draw(st.integers(1, 3)) + format(value, "o")
    digits = "0" * draw(st.integers(0, 2)) + format(value, draw(st.sampled_from(["x", "X"])))
    return draw(st.sampled_from(["0x", "0X"])) + digits


@st.composite
def v4_spelling(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """inet_aton's forms: a.b.c.d, a.b.c (16-bit last), a.b (24-bit last), a (32-bit), any radix."""
    n = int(ip)
    shape = draw(st.sampled_from([4, 3, 2, 1]))
    head = [(n >> (24 - 8 * i)) & 0xFF for i in range(shape - 1)]
    last = n & ((1 << (8 * (5 - shape))) - 1)
    host = ".".join([*(draw(v4_part(v)) for v in head), draw(v4_part(last))])
    return host + ("." if draw(st.booleans()) else "")


@st.composite
def v6_spelling(draw: st.DrawFn, ip: ipaddress.IPv6Address) -> str:
    """Compressed or exploded, zero-padded groups, any case; dotted tail for the IPv4-carrying forms."""
    text = draw(st.sampled_from([ip.compressed, ip.exploded]))
    if draw(st.booleans()):
        text = text.upper()
    zone = draw(st.sampled_from(["", "", "%25eth0", "%251"]))
    return f"[{text}{zone}]"


@st.composite
def carried_v4(draw: st.DrawFn, inner: ipaddress.IPv4Address) -> str:
    """An IPv6 host that carries `inner`: IPv4-mapped, IPv4-compatible, NAT64, 6to4 or Teredo."""
    n = int(inner)
    form = draw(st.sampled_from(["mapped", "mapped_dotted", "compatible", "nat64", "nat64_dotted", "6to4", "teredo"]))
    if form == "mapped_dotted":
        return f"[::ffff:{inner}]"
    if form == "nat64_dotted":
        return f"[64:ff9b::{inner}]"
    if form == "compatible" and n <= 0xFFFF:
        form = "mapped"  # ::a.b.c.d below ::1.0.0.0 is not an IPv4-compatible address
    value = {
        "mapped": (0xFFFF << 32) | n,
        "compatible": n,
        "nat64": (0x64FF9B << 96) | n,
        "6to4": (0x2002 << 112) | (n << 80) | draw(st.integers(0, 2**80 - 1)),
        "teredo": (0x20010000 << 96) | (draw(st.integers(0, 2**32 - 1)) << 64)
        | (draw(st.integers(0, 2**32 - 1)) << 32) | (n ^ 0xFFFFFFFF),
    }[form]
    return draw(v6_spelling(ipaddress.IPv6Address(value)))


_FULLWIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
_DOTS = ["\u3002", "\uff0e", "\uff61"]  # ideographic and fullwidth full stops: IDNA maps them to "."


@st.composite
def disguised(draw: st.DrawFn, host: str) -> str:
    """The host as-is, percent-encoded, or with IDNA look-alikes of its digits and dots."""
    how = draw(st.sampled_from(["plain", "plain", "percent", "idna"]))
    event(f"host {how}")
    if how == "percent" and not host.startswith("["):
        return "".join(f"%{ord(c):02x}" if draw(st.booleans()) else c for c in host)
    if how == "idna" and not host.startswith("["):
        return "".join(_FULLWIDTH.get(c, c) if draw(st.booleans()) else
                       (draw(st.sampled_from(_DOTS)) if c == "." and draw(st.booleans()) else c) for c in host)
    return host


@st.composite
def url_around(draw: st.DrawFn, host: str, tricks: bool) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "hTtPs"]))
    userinfo = draw(st.sampled_from(["", "", "", "", "", "user@", "example.com@", "93.184.216.34@"])) if tricks else ""
    port = draw(st.sampled_from(["", "", ":80", ":443"])) if tricks else ""
    tail = draw(st.sampled_from(["/", "/x?y=1", "#@example.com", "?@93.184.216.34", "/%2e%2e/"])) if tricks else "/"
    return f"{scheme}://{userinfo}{draw(disguised(host)) if tricks else host}{port}{tail}"


@st.composite
def non_public_url(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(["v4", "carried", "v6"]))
    if kind == "v4":
        ip = draw(non_public_v4)
        host = draw(v4_spelling(ip))
    elif kind == "carried":
        ip = draw(non_public_v4)
        host = draw(carried_v4(ip))
    else:
        ip = draw(non_public_v6)
        host = draw(v6_spelling(ip))
    event(kind)
    return draw(url_around(host, tricks=True)), str(ip)


def check(url: str):  # type: ignore[no-untyped-def]
    return asyncio.run(GUARD.check(url))


@PROFILE
@given(non_public_url())
def test_guard_refuses_every_spelling_of_a_non_public_address(case: tuple[str, str]) -> None:
    url, address = case
    try:
        target = check(url)
    except (BlockedURL, InvalidURL) as refused:
        event(type(refused).__name__)
        return
    except HostNotFound:
        event("a name to libc too")  # neither the guard nor libc reads it as an address: DNS would decide
        return
    raise AssertionError(f"{url!r} (the non-public address {address}) passed the guard as {target.address}")


@st.composite
def public_url(draw: st.DrawFn) -> tuple[str, str]:
    if draw(st.booleans()):
        ip = draw(public_v4)
        host = draw(st.sampled_from([str(ip), f"{ip}.", str(int(ip)), hex(int(ip))]))
    else:
        ip6 = draw(public_v6)
        return draw(url_around(draw(v6_spelling(ip6)).replace("%25eth0", "").replace("%251", ""), tricks=False)), \
            str(ip6)
    return draw(url_around(host, tricks=False)), str(ip)


@PROFILE
@given(public_url())
def test_guard_lets_every_public_address_through_and_pins_it(case: tuple[str, str]) -> None:
    url, address = case
    target = check(url)
    assert target.address == address, f"{url!r} pinned to {target.address}, expected {address}"
