"""Plugins that take names something else has."""

from __future__ import annotations

from tests.support.sample_plugins.echo import ShoutArgs
from toolfabric_server.common.tools import ToolPlugin, ToolSpec

# `crop` is a built-in vision tool.
BUILTIN_TOOL = ToolPlugin("clash", (ToolSpec("crop", "clash", "A second crop.", ShoutArgs),), "x:HANDLERS")
# `shout` belongs to the echo plugin.
OTHER_PLUGIN = ToolPlugin("clash2", (ToolSpec("shout", "clash2", "A second shout.", ShoutArgs),), "x:HANDLERS")
# The `ping` diagnostic every worker answers.
RESERVED = ToolPlugin("clash3", (ToolSpec("ping", "clash3", "Another ping.", ShoutArgs),), "x:HANDLERS")
NOT_A_PLUGIN = {"service": "dict"}
