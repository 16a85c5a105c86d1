"""Every setting a gateway process reads, read once when it starts and passed down (nothing below asks again)."""

from __future__ import annotations

from dataclasses import dataclass

from toolfabric_server.common.settings import CommonSettings, TelemetrySettings, WorkerSettings
from toolfabric_server.gateway.http.settings import HttpSettings
from toolfabric_server.gateway.mcp.settings import McpSettings
from toolfabric_server.gateway.settings import AuthSettings, GatewaySettings, TlsSettings
from toolfabric_server.gateway.stepping.settings import StepSettings
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.store.settings import StoreSettings
from toolfabric_server.tools.mcp.settings import McpClientSettings
from toolfabric_server.web.settings import FetchSettings


@dataclass(frozen=True)
class GatewayProcessSettings:
    common: CommonSettings
    worker: WorkerSettings
    telemetry: TelemetrySettings
    gateway: GatewaySettings
    auth: AuthSettings
    tls: TlsSettings
    model: ModelSettings
    store: StoreSettings
    http: HttpSettings
    step: StepSettings
    mcp: McpSettings
    fetch: FetchSettings  # the SSRF guard of the gateway's own image downloads (and of MCP servers over HTTP)
    mcp_client: McpClientSettings  # the MCP servers whose tools join the catalog

    @classmethod
    def read(cls) -> GatewayProcessSettings:
        """From the environment (TOOLFABRIC_*), now; a setting it refuses raises its ValidationError here."""
        return cls(common=CommonSettings(), worker=WorkerSettings(), telemetry=TelemetrySettings(),
                   gateway=GatewaySettings(), auth=AuthSettings(), tls=TlsSettings(), model=ModelSettings(),
                   store=StoreSettings(), http=HttpSettings(), step=StepSettings(), mcp=McpSettings(),
                   fetch=FetchSettings(), mcp_client=McpClientSettings())
