"""What the `toolfabric.tools` entry point `ocr` names (pyproject.toml)."""

from __future__ import annotations

from services.common.tools import ToolPlugin
from services.ocr.spec import TOOLS

PLUGIN = ToolPlugin(service="ocr", tools=TOOLS, handlers="services.ocr.handlers:handlers")
