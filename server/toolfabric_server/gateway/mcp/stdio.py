"""`toolfabric mcp`: the fabric's tools as an MCP server on stdin/stdout (for agent frameworks that
start their tools as a subprocess). Needs the fabric's Redis and workers; logs go to stderr."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys

from mcp.server.stdio import stdio_server

from toolfabric_server.catalog import full_catalog
from toolfabric_server.common import logs
from toolfabric_server.common.settings import CommonSettings, TelemetrySettings, WorkerSettings
from toolfabric_server.common.telemetry import setup as telemetry
from toolfabric_server.gateway.mcp.server import FabricMcp
from toolfabric_server.gateway.mcp.settings import McpSettings
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.stepping.runtime import standalone
from toolfabric_server.gateway.stepping.settings import StepSettings
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.tools.mcp.settings import McpClientSettings
from toolfabric_server.web.settings import FetchSettings

log = logging.getLogger(__name__)


async def serve_stdio(common: CommonSettings, worker: WorkerSettings, gw: GatewaySettings, model: ModelSettings,
                      step: StepSettings, fetch: FetchSettings, telemetry_settings: TelemetrySettings,
                      mcp: McpSettings, mcp_client: McpClientSettings) -> None:
    # stdio is a subprocess of the user who started it: no API key is asked, and it says so.
    log.warning("MCP on stdio runs as the local user (%s): no API key is asked, trajectories belong to no tenant",
                getpass.getuser())
    tools = await asyncio.to_thread(full_catalog, mcp_client, fetch)
    service = standalone(common, worker, gw, model, step, fetch, tools, telemetry_settings.capture_content)
    async with service as (step_service, blobs):
        fabric = FabricMcp(step_service, blobs, tools, mcp)
        async with stdio_server() as (read, write):
            await fabric.server.run(read, write, fabric.server.create_initialization_options())


def main() -> None:
    # The one read of the environment (this door's own settings, not the gateway's whole set: doors import no other
    # door); everything below is passed it.
    common, telemetry_settings = CommonSettings(), TelemetrySettings()
    logs.install(common.log_level, stream=sys.stderr)
    telemetry.setup_telemetry("toolfabric-mcp", telemetry.traces_file(common, telemetry_settings))
    try:
        asyncio.run(serve_stdio(common, WorkerSettings(), GatewaySettings(), ModelSettings(), StepSettings(),
                                FetchSettings(), telemetry_settings, McpSettings(), McpClientSettings()))
    finally:
        telemetry.shutdown_telemetry()
