"""The `mcp` worker's Celery task (`toolfabric worker mcp`): one handler per listed tool.

The servers' tools are listed when the worker registers its task (never at import); each call opens its
MCP session on the worker's async bridge (common/bridge.py).
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery, Task

from toolfabric_server.common.bridge import AsyncBridge, stateless
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.common.worker import Handler, register_service
from toolfabric_server.tools.mcp import SERVICE
from toolfabric_server.tools.mcp.calls import call as call_tool
from toolfabric_server.tools.mcp.catalog import list_tools
from toolfabric_server.tools.mcp.connect import guard_settings
from toolfabric_server.tools.mcp.settings import McpClientSettings
from toolfabric_server.web.settings import FetchSettings

BRIDGE: AsyncBridge[None] = AsyncBridge("mcp", stateless())


def handlers(config: McpClientSettings, fetch: FetchSettings,
             common: CommonSettings) -> tuple[list[Any], dict[str, Handler]]:
    """The tools the configured servers list now, and a handler for each."""
    tools, _ = list_tools(config, fetch)
    guard = guard_settings(fetch, config)

    def handler(server: str, tool: str, args: Any, ctx: ToolContext) -> ToolResult:
        return BRIDGE.run(lambda _: call_tool(server, config.servers[server], tool, args.root, config, guard, common))

    return [t.spec for t in tools], {t.spec.name: functools.partial(handler, t.server, t.tool) for t in tools}


def register(app: Celery, common: CommonSettings) -> Task:
    """`toolfabric.mcp.call` on the worker's app, for the tools the servers list at start (the MCP client's
    settings and the SSRF guard's are read here, at the worker's start)."""
    specs, by_name = handlers(McpClientSettings(), FetchSettings(), common)
    return register_service(app, SERVICE, specs, by_name, common)
