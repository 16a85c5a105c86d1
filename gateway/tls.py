"""TLS for the gateway's ports, from the PEM files in `TOOLFABRIC_TLS_CERT_FILE` / `_KEY_FILE`."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from services.common.errors import ConfigurationError
from services.common.settings import TlsSettings

log = logging.getLogger(__name__)


def bind_grpc(server: grpc.aio.Server, address: str, tls: TlsSettings) -> int:
    """Binds `address` with TLS when a certificate is configured, in plaintext otherwise; the bound port."""
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigurationError("TOOLFABRIC_TLS_CERT_FILE and TOOLFABRIC_TLS_KEY_FILE must be set together")
    if not tls.cert_file:
        return server.add_insecure_port(address)
    try:
        key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the TLS certificate or key: {exc}") from exc
    log.info("gRPC port %s uses TLS (%s)", address, tls.cert_file)
    return server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))


async def start_health_port(health_servicer: health.aio.HealthServicer, host: str, port: int) -> grpc.aio.Server:
    """A plaintext server with grpc.health.v1 only (the same statuses as the TLS port), for probes."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
