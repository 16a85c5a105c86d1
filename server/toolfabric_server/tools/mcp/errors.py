"""Errors of the MCP client (see toolfabric_server.common.errors for the hierarchy)::

    ToolUnavailable ── McpServerFailed   the server could not be started, reached, or answered badly
    ToolError       ── McpToolFailed     the server ran the tool and reported an error (isError)
"""

from __future__ import annotations

from toolfabric_server.common.errors import ToolError, ToolUnavailable


class McpServerFailed(ToolUnavailable):
    kind = "unavailable"


class McpToolFailed(ToolError):
    kind = "tool_error"
