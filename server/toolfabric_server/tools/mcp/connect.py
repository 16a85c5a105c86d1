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

from toolfabric_server.tools.mcp.settings import McpClientSettings, McpServer
from toolfabric_server.web.guard import Guard, Target
from toolfabric_server.web.settings import FetchSettings


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


def guard_settings(fetch: FetchSettings, client: McpClientSettings) -> FetchSettings:
    """The fetch service's SSRF guard, with the private hosts the MCP client may reach instead of its own."""
    return fetch.model_copy(update={"private_host_allowlist": client.private_host_allowlist})


async def _pinned_client(url: str, timeout_s: float, guard: FetchSettings) -> httpx2.AsyncClient:
    port = httpx2.URL(url).port or (443 if url.startswith("https") else 80)
    # The operator named this server's port.
    target = await Guard(guard.model_copy(update={"allowed_ports": sorted({80, 443, port})})).check(url)
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    # No public hook for the network backend (as web/transport.py does for httpx).
    transport._pool = httpcore2.AsyncConnectionPool(network_backend=_PinnedBackend(target),  # type: ignore[attr-defined]
                                                    ssl_context=httpx2.create_ssl_context(trust_env=False))
    return httpx2.AsyncClient(transport=transport, timeout=timeout_s, trust_env=False, follow_redirects=False)


@contextlib.asynccontextmanager
async def session(server: McpServer, guard: FetchSettings) -> AsyncIterator[ClientSession]:
    """An initialized session; leaving it ends the subprocess or the HTTP session. `guard`: the SSRF guard's
    settings for an HTTP server (`guard_settings`)."""
    async with contextlib.AsyncExitStack() as stack:
        if server.command:
            params = StdioServerParameters(command=server.command[0], args=server.command[1:],
                                           env=server.env or None)
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            client = await stack.enter_async_context(await _pinned_client(server.url, server.timeout_s, guard))
            read, write = await stack.enter_async_context(streamable_http_client(server.url, http_client=client))
        mcp_session = await stack.enter_async_context(ClientSession(read, write))
        await mcp_session.initialize()
        yield mcp_session
