"""A plugin that loads (its tools are declared) but whose handlers fail to import: its worker cannot start."""

from __future__ import annotations

from tests.support.sample_plugins.echo import ShoutArgs
from toolfabric_server.common.tools import ToolPlugin, ToolSpec

TOOLS = (ToolSpec("whisper", "fragile", "Repeat the text quietly.", ShoutArgs, modes=frozenset({"general"})),)
PLUGIN = ToolPlugin("fragile", TOOLS, "tests.support.sample_plugins.broken:HANDLERS")
