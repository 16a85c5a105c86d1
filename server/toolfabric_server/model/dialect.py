"""The R1V4 output parser under its original name: `parse_step(text) -> ParsedStep`.

Dialects live in `toolfabric_server.model.dialects`; this name stays for callers (and fuzz targets) that
parse R1V4 output directly.
"""

from toolfabric_server.model.dialects.base import ParsedStep, RawCall
from toolfabric_server.model.dialects.qwen3vl import PLAN_TOOLS, parse_step

__all__ = ["PLAN_TOOLS", "ParsedStep", "RawCall", "parse_step"]
