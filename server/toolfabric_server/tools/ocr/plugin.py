"""What the `toolfabric.tools` entry point `ocr` names (pyproject.toml)."""

from __future__ import annotations

from toolfabric_server.common.tools import ToolPlugin
from toolfabric_server.tools.ocr.spec import TOOLS

PLUGIN = ToolPlugin(service="ocr", tools=TOOLS, handlers="toolfabric_server.tools.ocr.handlers:handlers")
