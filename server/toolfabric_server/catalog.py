"""Every tool the fabric offers: each built-in service's `spec` module, installed plugins
(tools.plugins) and the tools of configured MCP servers (tools.mcp), as specs only."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from toolfabric_server.common.tools import Catalog, ToolSpec
from toolfabric_server.tools import plugins as plugin_loader

if TYPE_CHECKING:
    from toolfabric_server.tools.mcp.settings import McpClientSettings
    from toolfabric_server.web.settings import FetchSettings


def builtin_specs() -> list[ToolSpec]:
    from toolfabric_server.tools.fetch.spec import TOOLS as FETCH
    from toolfabric_server.tools.search.spec import TOOLS as SEARCH
    from toolfabric_server.tools.vision.spec import TOOLS as VISION

    return [*VISION, *SEARCH, *FETCH]


@lru_cache(maxsize=1)
def plugins() -> plugin_loader.Plugins:
    """The installed plugins that loaded, and the problems of those that did not."""
    return plugin_loader.load(plugin_loader.installed(), builtin_specs())


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The built-in and installed plugins' tools: the same in every process, whatever its settings."""
    return Catalog([*builtin_specs(), *plugins().specs])


def full_catalog(mcp_client: McpClientSettings, fetch: FetchSettings) -> Catalog:
    """`catalog()` and the tools the configured MCP servers list now (none unless `mcp_client.servers` names some;
    `fetch`: the SSRF guard's settings for servers reached over HTTP). A process builds it once, at its start, and
    passes it down: every service it names runs a worker."""
    from toolfabric_server.tools.mcp.catalog import list_tools

    tools, _ = list_tools(mcp_client, fetch)
    return Catalog([*catalog().specs, *(t.spec for t in tools)])
