"""`toolfabric mcp`: the fabric's tools as an MCP server on stdin/stdout (for agent frameworks that
start their tools as a subprocess). Needs the fabric's Redis and workers; logs go to stderr."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys

from mcp.server.stdio import stdio_server

from gateway.mcp.server import FabricMcp
from gateway.process_settings import GatewayProcessSettings
from gateway.stepping.runtime import standalone
from services.catalog import catalog
from services.common import logs
from services.common.telemetry import setup as telemetry

log = logging.getLogger(__name__)


async def serve_stdio(config: GatewayProcessSettings) -> None:
    # stdio is a subprocess of the user who started it: no API key is asked, and it says so.
    log.warning("MCP on stdio runs as the local user (%s): no API key is asked, trajectories belong to no tenant",
                getpass.getuser())
    async with standalone(config.common, config.worker, config.gateway, config.model, config.step, config.fetch,
                          config.telemetry.capture_content) as (step, blobs):
        fabric = FabricMcp(step, blobs, catalog(), config.mcp)
        async with stdio_server() as (read, write):
            await fabric.server.run(read, write, fabric.server.create_initialization_options())


def main() -> None:
    config = GatewayProcessSettings.read()  # the one read of the environment; everything below is passed it
    logs.install(config.common.log_level, stream=sys.stderr)
    telemetry.setup_telemetry("toolfabric-mcp", telemetry.traces_file(config.common, config.telemetry))
    try:
        asyncio.run(serve_stdio(config))
    finally:
        telemetry.shutdown_telemetry()
