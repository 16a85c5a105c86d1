"""The `mcp` worker's Celery task (`toolfabric worker mcp`): one handler per listed tool.

Celery runs tasks synchronously, so each call runs its own event loop and its own MCP session.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from services.common.tools import ToolContext, ToolResult
from services.common.worker import Handler, register_service
from services.mcp import SERVICE
from services.mcp import settings as mcp_client_settings
from services.mcp.calls import call as call_tool
from services.mcp.catalog import list_tools


def _handler(server: str, tool: str, args: Any, ctx: ToolContext) -> ToolResult:
    config = mcp_client_settings.mcp_client().servers[server]
    return asyncio.run(call_tool(server, config, tool, args.root))


TOOLS, PROBLEMS = list_tools(mcp_client_settings.mcp_client())
HANDLERS: dict[str, Handler] = {t.spec.name: functools.partial(_handler, t.server, t.tool) for t in TOOLS}
call = register_service(SERVICE, [t.spec for t in TOOLS], HANDLERS)
