"""The `mcp` worker's Celery task (`toolfabric worker mcp`): one handler per listed tool.

The servers' tools are listed when the worker registers its task (never at import); each call opens its
MCP session on the worker's async bridge (services/common/bridge.py).
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery, Task

from services.common.bridge import AsyncBridge, stateless
from services.common.tools import ToolContext, ToolResult
from services.common.worker import Handler, register_service
from services.mcp import SERVICE
from services.mcp import settings as mcp_client_settings
from services.mcp.calls import call as call_tool
from services.mcp.catalog import list_tools
from services.mcp.settings import McpClientSettings, McpServer

BRIDGE: AsyncBridge[None] = AsyncBridge("mcp", stateless())


def _handler(server: str, config: McpServer, tool: str, args: Any, ctx: ToolContext) -> ToolResult:
    return BRIDGE.run(lambda _: call_tool(server, config, tool, args.root))


def handlers(config: McpClientSettings) -> tuple[list[Any], dict[str, Handler]]:
    """The tools the configured servers list now, and a handler for each."""
    tools, _ = list_tools(config)
    return [t.spec for t in tools], {
        t.spec.name: functools.partial(_handler, t.server, config.servers[t.server], t.tool) for t in tools}


def register(app: Celery) -> Task:
    """`toolfabric.mcp.call` on the worker's app, for the tools the servers list at start."""
    specs, by_name = handlers(mcp_client_settings.mcp_client())
    return register_service(app, SERVICE, specs, by_name)
