"""The SSRF guard holds: every attack URL is refused before any connection is made.

Names are answered by a hosts-table resolver (no real DNS traffic); connections go through a
recording backend that only ever lets loopback through, so a guard failure shows up as a
recorded connect attempt instead of traffic leaving the machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import pytest

from toolfabric_server.web.client import fetch_image_bytes
from toolfabric_server.web.decoding import PAGE_TYPES
from toolfabric_server.web.errors import BlockedURL, ConnectFailed, InvalidURL, PrivateAddress, UnsupportedScheme
from toolfabric_server.web.fetcher import Fetcher
from toolfabric_server.web.guard import SystemResolver
from toolfabric_server.web.settings import FetchSettings
from toolfabric_server.web.transport import PinnedNetworkBackend

from .conftest import HostsResolver, settings_for
from .servers import Server, html, redirect, serve

PUBLIC = "93.184.216.34"  # a public address nothing in these tests ever reaches


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Real sockets to loopback only; records every connect the fetcher attempts."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None, socket_options: Iterable[Any] | None = None):
        self.attempts.append((host, port))
        if not host.startswith("127."):
            raise httpcore.ConnectError(f"test network: {host} is not loopback")
        return await self.inner.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


HOSTS = HostsResolver({
    "metadata.google.internal": ["169.254.169.254"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "mixed.attacker.test": [PUBLIC, "10.0.0.5"],
    "v6loopback.attacker.test": ["::1"],
    "mapped.attacker.test": ["::ffff:169.254.169.254"],
    "cgnat.attacker.test": ["100.64.0.10"],
    "ula.attacker.test": [PUBLIC, "fd12:3456::1"],
    "example.com": [PUBLIC],
})

ATTACKS = [
    # loopback in every IPv4 spelling
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://0x7f.1/",
    "http://127.0.0.1./",
    "HTTP://127.0.0.1:443/",
    # unspecified, "this host"
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    # IPv6 loopback and IPv6 forms that embed a private IPv4 address
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2001:0:4136:e378:8000:edcb:80ff:fffe]/",  # Teredo, client 127.0.0.1
    # cloud metadata endpoints
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",  # Alibaba Cloud, in CGNAT space
    "http://metadata.google.internal/computeMetadata/v1/",
    # private, link-local, multicast, broadcast, reserved, benchmarking
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    # names that resolve to non-public addresses (wildcard DNS, mixed answers, IPv6 answers)
    "http://localhost/",
    "http://LOCALHOST./",
    "http://127.0.0.1.nip.io/",
    "http://mixed.attacker.test/",
    "http://v6loopback.attacker.test/",
    "http://mapped.attacker.test/",
    "http://cgnat.attacker.test/",
    "http://ula.attacker.test/",
    # schemes other than http(s)
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "dict://127.0.0.1:11211/stats",
    "ftp://example.com/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    # ports outside the allowed list, credentials, malformed numeric hosts
    "http://example.com:6379/",
    "http://example.com:22/",
    "http://evil.com@127.0.0.1/",
    "http://user:pass@example.com/",
    "http://1.2.3.4.5/",
    "http://256.0.0.1/",
]


class LocalhostByTheSystem(HostsResolver):
    """The hosts table, but `localhost` is looked up by the real system resolver (no network)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        if host == "localhost":
            return await SystemResolver().resolve(host, port)
        return await super().resolve(host, port)


def test_there_are_at_least_thirty_attacks() -> None:
    assert len(ATTACKS) >= 30


@pytest.mark.parametrize("url", ATTACKS)
async def test_attack_url_is_refused_without_connecting(url: str) -> None:
    network = RecordingBackend()
    resolver = LocalhostByTheSystem(HOSTS.table)
    async with Fetcher(FetchSettings(), resolver, PinnedNetworkBackend(network)) as fetcher:
        with pytest.raises((BlockedURL, InvalidURL)) as refused:
            await fetcher.fetch(url, PAGE_TYPES)
    assert network.attempts == []
    assert str(refused.value)  # a message the model can read


async def test_refusal_says_why_and_how_to_allow_it() -> None:
    async with Fetcher(FetchSettings(), HOSTS) as fetcher:
        with pytest.raises(PrivateAddress) as refused:
            await fetcher.fetch("http://metadata.google.internal/", PAGE_TYPES)
    message = str(refused.value)
    assert "169.254.169.254" in message and "link-local" in message
    assert "TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST" in message


async def test_redirect_to_a_private_address_is_refused_at_that_hop(web: Server) -> None:
    with serve() as internal:  # a second loopback service that must never be reached
        internal.routes["/admin"] = html("secret")
        web.routes["/meta"] = redirect("http://169.254.169.254/latest/meta-data/")
        web.routes["/internal"] = redirect(f"http://localhost:{internal.port}/admin")
        web.routes["/mapped"] = redirect(f"http://[::ffff:127.0.0.1]:{internal.port}/admin")
        web.routes["/file"] = redirect("file:///etc/passwd")
        settings = settings_for(web, allowed_ports=[80, 443, web.port, internal.port])
        async with Fetcher(settings) as fetcher:
            for path, error in [("/meta", PrivateAddress), ("/internal", PrivateAddress),
                                ("/mapped", PrivateAddress), ("/file", UnsupportedScheme)]:
                with pytest.raises(error):
                    await fetcher.fetch(web.url(path), PAGE_TYPES)
        assert internal.requests == []
    assert web.requests == ["/meta", "/internal", "/mapped", "/file"]


async def test_connection_goes_to_the_checked_address_not_a_second_dns_answer(web: Server) -> None:
    # A rebinding name: the first answer passes the check, later answers point elsewhere.
    # `.test` never resolves in real DNS, so success proves no second lookup happened.
    with serve("127.0.0.2", web.port) as evil:
        evil.routes["/"] = html("<html><body><p>EVIL twin</p></body></html>")
        web.routes["/"] = html("<html><body><article><p>the checked server</p></article></body></html>")
        resolver = HostsResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
        settings = settings_for(web, private_host_allowlist=[f"rebind.test:{web.port}"])
        async with Fetcher(settings, resolver) as fetcher:
            fetched = await fetcher.fetch(f"http://rebind.test:{web.port}/", PAGE_TYPES)
        assert b"the checked server" in fetched.body
        assert resolver.lookups == ["rebind.test"]
        assert evil.requests == []
        # Host header keeps the name (virtual hosting and TLS SNI use it, not the address)
        assert web.headers_seen[0]["Host"] == f"rebind.test:{web.port}"


async def test_public_answer_then_private_answer_never_reaches_the_private_address(web: Server) -> None:
    web.routes["/"] = html("private data")
    resolver = HostsResolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    network = RecordingBackend()
    settings = settings_for(web, private_host_allowlist=[])
    async with Fetcher(settings, resolver, PinnedNetworkBackend(network)) as fetcher:
        with pytest.raises(ConnectFailed):  # the test network refuses the public address
            await fetcher.fetch(f"http://rebind.test:{web.port}/", PAGE_TYPES)
    assert network.attempts == [(PUBLIC, web.port)]
    assert resolver.lookups == ["rebind.test"]
    assert web.requests == []


async def test_redirect_to_a_name_that_rebinds_to_loopback_is_refused(web: Server) -> None:
    web.routes["/hop"] = redirect(f"http://second.test:{web.port}/")
    resolver = HostsResolver({"second.test": ["127.0.0.1"]})
    async with Fetcher(settings_for(web), resolver) as fetcher:
        with pytest.raises(PrivateAddress):
            await fetcher.fetch(web.url("/hop"), PAGE_TYPES)
    assert web.requests == ["/hop"]


async def test_unpinned_hosts_are_never_connected_to() -> None:
    backend = PinnedNetworkBackend(RecordingBackend())
    with pytest.raises(httpcore.ConnectError, match="no address was checked"):
        await backend.connect_tcp("127.0.0.1", 80)


async def test_private_hosts_stay_refused_by_default_and_open_only_when_allowlisted(web: Server) -> None:
    web.routes["/"] = html("<html><body><p>intranet page</p></body></html>")
    async with Fetcher(settings_for(web, private_host_allowlist=[])) as fetcher:
        with pytest.raises(PrivateAddress):
            await fetcher.fetch(web.url("/"), PAGE_TYPES)
    # allowlisting one port of a host does not open its other ports
    other = settings_for(web, private_host_allowlist=[f"127.0.0.1:{web.port + 1}"])
    async with Fetcher(other) as fetcher:
        with pytest.raises(PrivateAddress):
            await fetcher.fetch(web.url("/"), PAGE_TYPES)
    async with Fetcher(settings_for(web)) as fetcher:
        assert b"intranet page" in (await fetcher.fetch(web.url("/"), PAGE_TYPES)).body
    async with Fetcher(settings_for(web, private_host_allowlist=["127.0.0.0/8"])) as fetcher:
        assert b"intranet page" in (await fetcher.fetch(web.url("/"), PAGE_TYPES)).body


async def test_gateway_image_download_goes_through_the_same_guard(web: Server) -> None:
    with pytest.raises(PrivateAddress):
        await fetch_image_bytes("http://169.254.169.254/latest/meta-data/", 1024, FetchSettings())
    with pytest.raises(PrivateAddress):
        await fetch_image_bytes(web.url("/x.png"), 1024, settings_for(web, private_host_allowlist=[]))
    with pytest.raises(UnsupportedScheme):
        await fetch_image_bytes("file:///etc/passwd", 1024, FetchSettings())
