"""`toolfabric mcp`: the fabric's tools as an MCP server on stdin/stdout (for agent frameworks that
start their tools as a subprocess). Needs the fabric's Redis and workers; logs go to stderr."""

from __future__ import annotations

import asyncio
import logging
import sys

from mcp.server.stdio import stdio_server

from gateway.mcp.server import FabricMcp
from gateway.step.runtime import standalone
from services.catalog import catalog
from services.common import settings
from services.common.telemetry import setup as telemetry


async def serve_stdio() -> None:
    async with standalone() as (step, blobs):
        fabric = FabricMcp(step, blobs, catalog(), settings.mcp())
        async with stdio_server() as (read, write):
            await fabric.server.run(read, write, fabric.server.create_initialization_options())


def main() -> None:
    logging.basicConfig(level=settings.common().log_level, stream=sys.stderr)
    telemetry.setup_telemetry("toolfabric-mcp")
    try:
        asyncio.run(serve_stdio())
    finally:
        telemetry.shutdown_telemetry()
