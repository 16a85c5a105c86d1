"""Every setting a gateway process reads, read once when it starts and passed down (nothing below asks again)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.http.settings import HttpSettings
from gateway.mcp.settings import McpSettings
from gateway.settings import AuthSettings, GatewaySettings, TlsSettings
from gateway.stepping.settings import StepSettings
from services.common.settings import CommonSettings, TelemetrySettings, WorkerSettings
from services.mcp.settings import McpClientSettings
from services.model.settings import ModelSettings
from services.store.settings import StoreSettings
from services.web.settings import FetchSettings


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
