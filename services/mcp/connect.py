"""One MCP client session with a configured server: a stdio subprocess, or streamable HTTP reached
only at an address the fetch service's SSRF guard checked (the connection is pinned to it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore2
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from services.mcp import settings as mcp_client_settings
from services.mcp.settings import McpServer
from services.web import settings as web_settings
from services.web.guard import Guard, Target


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Connects the checked host:port to the checked address only (no second DNS answer is used)."""

    def __init__(self, target: Target) -> None:
        self._target, self._inner = target, httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        if (host.lower(), port) != (self._target.host, self._target.port):
            raise httpcore2.ConnectError(f"refusing to connect to {host}:{port}: only the checked server is allowed")
        return await self._inner.connect_tcp(self._target.address, port, timeout=timeout,
                                             local_address=local_address, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _pinned_client(url: str, timeout_s: float) -> httpx2.AsyncClient:
    port = httpx2.URL(url).port or (443 if url.startswith("https") else 80)
    fetch = web_settings.fetch().model_copy(update={
        "private_host_allowlist": mcp_client_settings.mcp_client().private_host_allowlist,
        "allowed_ports": sorted({80, 443, port})})  # the operator named this server's port
    target = await Guard(fetch).check(url)
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    # No public hook for the network backend (as services/web/transport.py does for httpx).
    transport._pool = httpcore2.AsyncConnectionPool(network_backend=_PinnedBackend(target),  # type: ignore[attr-defined]
                                                    ssl_context=httpx2.create_ssl_context(trust_env=False))
    return httpx2.AsyncClient(transport=transport, timeout=timeout_s, trust_env=False, follow_redirects=False)


@contextlib.asynccontextmanager
async def session(server: McpServer) -> AsyncIterator[ClientSession]:
    """An initialized session; leaving it ends the subprocess or the HTTP session."""
    async with contextlib.AsyncExitStack() as stack:
        if server.command:
            params = StdioServerParameters(command=server.command[0], args=server.command[1:],
                                           env=server.env or None)
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            client = await stack.enter_async_context(await _pinned_client(server.url, server.timeout_s))
            read, write = await stack.enter_async_context(streamable_http_client(server.url, http_client=client))
        mcp_session = await stack.enter_async_context(ClientSession(read, write))
        await mcp_session.initialize()
        yield mcp_session
