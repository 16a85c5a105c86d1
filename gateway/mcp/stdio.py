"""`toolfabric mcp`: the fabric's tools as an MCP server on stdin/stdout (for agent frameworks that
start their tools as a subprocess). Needs the fabric's Redis and workers; logs go to stderr."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys

from mcp.server.stdio import stdio_server

from gateway.mcp import settings as mcp_settings
from gateway.mcp.server import FabricMcp
from gateway.stepping.runtime import standalone
from services.catalog import catalog
from services.common import logs, settings
from services.common.telemetry import setup as telemetry

log = logging.getLogger(__name__)


async def serve_stdio() -> None:
    # stdio is a subprocess of the user who started it: no API key is asked, and it says so.
    log.warning("MCP on stdio runs as the local user (%s): no API key is asked, trajectories belong to no tenant",
                getpass.getuser())
    async with standalone() as (step, blobs):
        fabric = FabricMcp(step, blobs, catalog(), mcp_settings.mcp())
        async with stdio_server() as (read, write):
            await fabric.server.run(read, write, fabric.server.create_initialization_options())


def main() -> None:
    logs.install(settings.common().log_level, stream=sys.stderr)
    telemetry.setup_telemetry("toolfabric-mcp")
    try:
        asyncio.run(serve_stdio())
    finally:
        telemetry.shutdown_telemetry()
