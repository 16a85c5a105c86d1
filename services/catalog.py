"""Every tool the fabric offers: each built-in service's `spec` module, installed plugins
(services.plugins) and the tools of configured MCP servers (services.mcp), as specs only."""

from __future__ import annotations

from functools import lru_cache

from services import plugins as plugin_loader
from services.common.tools import Catalog, ToolSpec


def builtin_specs() -> list[ToolSpec]:
    from services.fetch.spec import TOOLS as FETCH
    from services.search.spec import TOOLS as SEARCH
    from services.vision.spec import TOOLS as VISION

    return [*VISION, *SEARCH, *FETCH]


@lru_cache(maxsize=1)
def plugins() -> plugin_loader.Plugins:
    """The installed plugins that loaded, and the problems of those that did not."""
    return plugin_loader.load(plugin_loader.installed(), builtin_specs())


@lru_cache(maxsize=1)
def mcp_specs() -> list[ToolSpec]:
    """Tools of the configured MCP servers (none unless TOOLFABRIC_MCP_CLIENT_SERVERS names some)."""
    from services.mcp import settings as mcp_client_settings
    from services.mcp.catalog import list_tools
    from services.web import settings as web_settings

    tools, _ = list_tools(mcp_client_settings.mcp_client(), web_settings.fetch())
    return [t.spec for t in tools]


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog([*builtin_specs(), *plugins().specs, *mcp_specs()])


def service_names() -> list[str]:
    """Every service a deployment runs a worker for: the built-ins, then each loaded plugin's."""
    return catalog().services()
