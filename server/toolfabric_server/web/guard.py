"""The SSRF guard: which URLs may be fetched, and the one address each may connect to.

Layers, in order, for the first URL and again for every redirect hop:
1. parse with the same URL parser the HTTP client uses (no parser differentials); only
   http/https, no credentials in the URL, a plain DNS name or IP literal as host;
2. port from `allowed_ports`;
3. resolve once (IP literals in any spelling — decimal, octal, hex, short — are parsed, not
   resolved) and refuse if ANY address is not public (see addresses.py), unless the host is
   on the private-host allowlist;
4. hand back a `Target` carrying the checked address: the transport connects to exactly that
   address (transport.py), so a DNS answer that changes between check and connect (rebinding)
   is never used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import httpx

from toolfabric_server.web.addresses import IPAddress, parse_ip_literal, why_not_public
from toolfabric_server.web.errors import (
    DisallowedPort,
    HostNotFound,
    InvalidURL,
    PrivateAddress,
    UnsupportedScheme,
)
from toolfabric_server.web.settings import FetchSettings

MAX_URL_CHARS = 4096
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"^(?=.{1,253}\.?$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")


class Resolver(Protocol):
    """Turns a host name into addresses; injected so tests can play DNS (rebinding)."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo), run off the event loop."""

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise HostNotFound(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, with the address the connection must go to."""

    url: httpx.URL
    host: str  # as the HTTP client will name it (IDNA, lower case): the pin's key
    port: int
    address: str


class Allowlist:
    """Hosts allowed to be private: `name`, `name:port`, `1.2.3.4:port`, `[::1]:port`, or a CIDR."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._hosts: set[tuple[str, int | None]] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if "/" in entry:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            host, port = _split_host_port(entry)
            self._hosts.add((_canonical_host(host), port))

    def allows(self, host: str, port: int, address: IPAddress) -> bool:
        name = _canonical_host(host)
        if (name, port) in self._hosts or (name, None) in self._hosts:
            return True
        return any(address.version == n.version and address in n for n in self._networks)

    def __bool__(self) -> bool:
        return bool(self._hosts or self._networks)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def _canonical_host(host: str) -> str:
    ip = parse_ip_literal(host)
    return str(ip) if ip is not None else host.rstrip(".").lower()


class Guard:
    """Checks URLs against the fetch policy; `check` resolves and pins one address."""

    def __init__(self, settings: FetchSettings, resolver: Resolver | None = None) -> None:
        self._settings = settings
        self._resolver = resolver or SystemResolver()
        self._allowlist = Allowlist(settings.private_host_allowlist)
        self._ports = set(settings.allowed_ports)

    def parse(self, raw: str) -> httpx.URL:
        """Syntax and policy checks that need no network: scheme, credentials, host, port."""
        if not isinstance(raw, str) or not raw.strip():
            raise InvalidURL("empty URL; give an absolute http(s) URL such as https://example.com/page")
        text = raw.strip()
        if len(text) > MAX_URL_CHARS:
            raise InvalidURL(f"URL is {len(text)} characters long; the limit is {MAX_URL_CHARS}")
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise InvalidURL(f"not a valid URL {text[:200]!r}: {exc}") from None
        scheme = url.scheme.lower()
        if not scheme:
            raise InvalidURL(f"{text[:200]!r} is not an absolute URL; it needs http:// or https://")
        if scheme not in _DEFAULT_PORTS:
            raise UnsupportedScheme(f"scheme {scheme!r} is not allowed; only http and https URLs can be visited")
        if url.userinfo:
            raise InvalidURL("URLs with a user name or password (user@host) are not allowed")
        host = url.raw_host.decode("ascii").lower()
        if not host:
            raise InvalidURL(f"{text[:200]!r} has no host name")
        if parse_ip_literal(host) is None:
            if not _HOSTNAME.match(host):
                raise InvalidURL(f"{host!r} is not a valid host name")
            if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
                # As browsers do: a numeric last label means an IPv4 address, and this one is malformed.
                raise InvalidURL(f"{host!r} looks like an IPv4 address but is not a valid one")
        port = url.port or _DEFAULT_PORTS[scheme]
        if not 0 < port < 65536:
            raise InvalidURL(f"port {port} is not a valid port number")
        if port not in self._ports:
            allowed = ", ".join(str(p) for p in sorted(self._ports))
            raise DisallowedPort(
                f"port {port} is not allowed (allowed: {allowed}; see TOOLFABRIC_FETCH_ALLOWED_PORTS)"
            )
        return url.copy_with(fragment=None)

    async def check(self, raw: str | httpx.URL) -> Target:
        """Parse, resolve once, refuse non-public addresses; the Target pins the checked address."""
        url = self.parse(str(raw))
        host = url.raw_host.decode("ascii").lower()
        port = url.port or _DEFAULT_PORTS[url.scheme]
        literal = parse_ip_literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                async with asyncio.timeout(self._settings.connect_timeout_s):
                    answers = await self._resolver.resolve(host.rstrip("."), port)
            except TimeoutError:
                raise HostNotFound(f"resolving {host!r} took longer than {self._settings.connect_timeout_s}s") from None
            addresses = [ipaddress.ip_address(a) for a in answers]
            if not addresses:
                raise HostNotFound(f"host {host!r} has no addresses")
        for address in addresses:
            reason = why_not_public(address)
            if reason and not self._allowlist.allows(host, port, address):
                shown = f"{host} is" if literal is not None else f"{host} resolves to {address},"
                raise PrivateAddress(
                    f"refused {url.scheme}://{host}:{port}: {shown} a {reason} address; "
                    "non-public hosts can only be fetched when listed in TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST"
                )
        return Target(url=url, host=host, port=port, address=str(addresses[0]))
