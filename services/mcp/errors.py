"""Errors of the MCP client (see services.common.errors for the hierarchy)::

    ToolUnavailable ── McpServerFailed   the server could not be started, reached, or answered badly
    ToolError       ── McpToolFailed     the server ran the tool and reported an error (isError)
"""

from __future__ import annotations

from services.common.errors import ToolError, ToolUnavailable


class McpServerFailed(ToolUnavailable):
    kind = "unavailable"


class McpToolFailed(ToolError):
    kind = "tool_error"
