"""An httpx transport that connects only to addresses the guard checked (DNS-rebinding proof).

The URL keeps its host name, so TLS sends it as SNI, certificates are verified against it and
the Host header carries it; only the TCP connect goes to the pinned address instead of a fresh
DNS answer. A host with no pin is never connected to. No proxy is ever used (a proxy would
resolve the name itself).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from toolfabric_server.web.guard import Target


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Maps (host, port) to the checked address at connect time; refuses anything unpinned."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()
        self._pins: dict[tuple[str, int], str] = {}

    def pin(self, target: Target) -> None:
        self._pins[(target.host, target.port)] = target.address

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = self._pins.get((host.lower(), port))
        if address is None:
            raise httpcore.ConnectError(f"refusing to connect to {host}:{port}: no address was checked for it")
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used by the fetcher")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """Certificate-verifying context, built once per process (loading the CA bundle takes ~20 ms)."""
    return httpx.create_ssl_context(trust_env=False)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request mapping, error mapping) over the pinned network backend."""

    def __init__(self, backend: PinnedNetworkBackend, ssl_context: ssl.SSLContext | None = None,
                 max_connections: int = 20) -> None:
        context = ssl_context or default_ssl_context()
        super().__init__(verify=context, trust_env=False, retries=0)
        # httpx has no public hook for the network backend, so the pool it built is replaced by
        # an equivalent one using ours (tests/fetch/test_ssrf_rebinding.py fails if this breaks).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )
