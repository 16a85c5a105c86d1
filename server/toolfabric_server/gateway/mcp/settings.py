"""Settings of the fabric as an MCP server (TOOLFABRIC_MCP_*).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from toolfabric.v1.names import DEFAULT_MODE, ModeName
from toolfabric_server.common.settings import config


class McpSettings(BaseSettings):
    """The fabric as an MCP server (gateway/mcp): its tools for agent frameworks, over stdio or HTTP."""

    model_config = config("TOOLFABRIC_MCP_")

    # Streamable HTTP at http://<gateway host>:<port>/mcp on the gateway; 0 = not served (stdio: `toolfabric mcp`).
    http_port: int = Field(default=0, ge=0, le=65535)
    # The tools a session is offered (and may call): those of this mode.
    mode: ModeName = DEFAULT_MODE
    # Largest image an MCP client may add to its session (add_image), before decoding.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
