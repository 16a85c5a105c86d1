"""The tools of the configured MCP servers, as ToolSpecs of the `mcp` service named `<server>.<tool>`.

Listed when a catalog is built (the gateway at start, the `mcp` worker at start). A server that
cannot be listed in time, and a tool whose name or input schema is unusable, are left out with a
problem saying why; everything else is unaffected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from dataclasses import dataclass

from toolfabric_server.common.tools import ToolSpec
from toolfabric_server.tools.mcp import SERVICE
from toolfabric_server.tools.mcp.arguments import arguments_model
from toolfabric_server.tools.mcp.connect import guard_settings, session
from toolfabric_server.tools.mcp.settings import McpClientSettings, McpServer
from toolfabric_server.web.settings import FetchSettings

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class McpTool:
    spec: ToolSpec
    server: str
    tool: str  # the server's own name for it


def _specs(name: str, server: McpServer, tools: list, problems: list[str]) -> list[McpTool]:
    out = []
    for tool in tools:
        if not _NAME.match(str(tool.name)):
            problems.append(f"MCP server {name!r}: tool {str(tool.name)[:80]!r} left out: not a usable tool name")
            continue
        try:
            model = arguments_model(f"{name}.{tool.name}", tool.input_schema)
        except ValueError as exc:
            problems.append(f"MCP server {name!r}: tool {tool.name!r} left out: {exc}")
            continue
        description = (tool.description or f"{tool.name} (MCP server {name})")[:2000]
        spec = ToolSpec(name=f"{name}.{tool.name}", service=SERVICE, description=description, arguments=model,
                        modes=frozenset(server.modes))
        out.append(McpTool(spec, name, tool.name))
    return out


async def _list(name: str, server: McpServer, timeout_s: float, guard: FetchSettings,
                problems: list[str]) -> list[McpTool]:
    try:
        async with asyncio.timeout(timeout_s), session(server, guard) as mcp:
            listed = await mcp.list_tools()
    except Exception as exc:  # anything a server does wrong costs its own tools only
        problems.append(f"MCP server {name!r} left out: listing its tools failed: {type(exc).__name__}: {exc}"
                        if not isinstance(exc, TimeoutError) else
                        f"MCP server {name!r} left out: it did not list its tools within {timeout_s:g}s")
        return []
    return _specs(name, server, list(listed.tools), problems)


def list_tools(config: McpClientSettings, fetch: FetchSettings) -> tuple[list[McpTool], list[str]]:
    """Every usable tool of every configured server, and the problems of what was left out (`fetch`: the SSRF
    guard's settings, for servers reached over HTTP)."""
    if not config.servers:
        return [], []
    problems: list[str] = []
    guard = guard_settings(fetch, config)

    async def everything() -> list[list[McpTool]]:
        return await asyncio.gather(*(_list(n, s, config.list_timeout_s, guard, problems)
                                      for n, s in config.servers.items()))

    # Callers may already run an event loop (the gateway builds its catalog inside one).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        found = pool.submit(asyncio.run, everything()).result()
    for problem in problems:
        log.error("%s", problem)
    return [t for tools in found for t in tools], problems
