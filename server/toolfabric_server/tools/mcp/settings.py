"""Settings of the fabric as an MCP client (TOOLFABRIC_MCP_CLIENT_*).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings

from toolfabric.v1.names import DEEP_RESEARCH, GENERAL, ModeName
from toolfabric_server.common.settings import config


class McpServer(BaseModel):
    """One MCP server whose tools join the catalog as `<name>.<tool>` (TOOLFABRIC_MCP_CLIENT_SERVERS)."""

    model_config = ConfigDict(extra="forbid")

    # Either a command started over stdio (argv) …
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # … or a streamable-HTTP URL, reached through the fetch service's SSRF guard.
    url: str = ""
    modes: list[ModeName] = [DEEP_RESEARCH, GENERAL]
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if bool(self.command) == bool(self.url):
            raise ValueError("an MCP server needs exactly one of command (stdio) or url (streamable HTTP)")
        return self


class McpClientSettings(BaseSettings):
    """The fabric as an MCP client (tools/mcp): tools of other MCP servers, on the `mcp` worker queue."""

    model_config = config("TOOLFABRIC_MCP_CLIENT_")

    # JSON object: name → McpServer, e.g. {"calc": {"command": ["python", "calc.py"]}}.
    servers: dict[str, McpServer] = Field(default_factory=dict)
    # Listing a server's tools (when the catalog is built) gives up after this long.
    list_timeout_s: float = Field(default=20.0, gt=0)
    # Text a call returns to the model is cut to this many characters; images beyond the count are dropped.
    max_result_chars: int = Field(default=20_000, ge=100)
    max_result_images: int = Field(default=4, ge=0)
    # host or host:port of HTTP MCP servers allowed although private (same rules as the fetch allowlist).
    private_host_allowlist: list[str] = Field(default_factory=list)


@lru_cache(maxsize=1)
def mcp_client() -> McpClientSettings:
    return McpClientSettings()
