"""Every listening socket of the gateway is made here, with TLS when it is configured, and registered.

`TOOLFABRIC_TLS_CERT_FILE` / `_KEY_FILE` (PEM) turn TLS on for every door at once: the gRPC port, the
HTTP chat API, the step API, the MCP endpoint and the blob port. The one plaintext exception is the
health-only gRPC port for probes that cannot speak TLS (`TOOLFABRIC_TLS_HEALTH_PORT`), which serves
grpc.health.v1 and nothing else. Each function registers the door it opens with policy/doors.py.

With `TOOLFABRIC_GATEWAY_REUSE_PORT` every door's socket is bound with SO_REUSEPORT, so several gateway
processes on one host serve the same ports and the kernel spreads new connections over them; without it a
taken port fails the start (gRPC's own default of SO_REUSEPORT is turned off to match).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2_grpc
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from toolfabric_server.common.blob_urls import BlobServer, start_blob_server
from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.telemetry.metrics import MetricsServer, start_metrics_server
from toolfabric_server.gateway.policy.doors import Door, Doors, Guard
from toolfabric_server.gateway.settings import TlsSettings

log = logging.getLogger(__name__)


def _files(tls: TlsSettings) -> tuple[str, str] | None:
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigurationError("TOOLFABRIC_TLS_CERT_FILE and TOOLFABRIC_TLS_KEY_FILE must be set together")
    if not tls.cert_file:
        return None
    for path in (tls.cert_file, tls.key_file):
        if not Path(path).is_file():
            raise ConfigurationError(f"cannot read the TLS certificate or key: {path} is not a file")
    return tls.cert_file, tls.key_file


def grpc_options(reuse_port: bool) -> list[tuple[str, int]]:
    """The server option that makes the gRPC ports shared (or exclusive) like every other door."""
    return [("grpc.so_reuseport", int(reuse_port))]


def reusable_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound TCP socket for an HTTP door, shared with the host's other gateway processes when asked."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def bind_grpc(doors: Doors, server: grpc.aio.Server, name: str, host: str, port: int, tls: TlsSettings,
              guard: Guard, routes: tuple[str, ...], open_routes: tuple[str, ...] = ()) -> int:
    """Binds host:port with TLS when a certificate is configured, in plaintext otherwise; the bound port."""
    files = _files(tls)
    if files is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        try:
            cert, key = Path(files[0]).read_bytes(), Path(files[1]).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the TLS certificate or key: {exc}") from exc
        bound = server.add_secure_port(f"{host}:{port}", grpc.ssl_server_credentials([(key, cert)]))
    doors.register(Door(name, "grpc", host, bound, files is not None, guard, routes, open_routes))
    return bound


async def start_health_port(doors: Doors, health_servicer: health.aio.HealthServicer, host: str,
                            port: int, reuse_port: bool = False) -> grpc.aio.Server:
    """A plaintext server with grpc.health.v1 only (the same statuses as the TLS port), for probes."""
    server = grpc.aio.server(options=grpc_options(reuse_port))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    routes = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
    doors.register(Door("health", "grpc", host, bound, False, "none", routes, routes))
    return server


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway owns SIGTERM/SIGINT (it drains every door together); uvicorn must not take them.
        yield


def served_paths(asgi: ASGIApp) -> tuple[str, ...]:
    """Every path `asgi` routes, read from the app itself (through its middleware): the door list names
    what is really served, so a route added later is in it, and the door test tries it."""
    app: Any = asgi
    for _ in range(16):  # middleware layers keep the next one in `.app`
        if isinstance(app, Starlette):
            break
        app = getattr(app, "app", None) or getattr(app, "middleware_stack", None)
    if not isinstance(app, Starlette):
        raise TypeError(f"cannot list the routes of {type(asgi).__name__}: serve a Starlette app")
    paths: list[str] = []
    for route in app.routes:
        if isinstance(route, Mount):  # a mounted router: its own routes under the prefix
            paths += [route.path + sub for sub in served_paths(route.app)]
        else:
            paths.append(getattr(route, "path", ""))
    return tuple(dict.fromkeys(p for p in paths if p))


class HttpListener:
    """An ASGI app served by uvicorn on the gateway's event loop (TLS from the settings). The door's routes are
    the app's own (`served_paths`); `open_routes`, those served without a key, must be among them."""

    def __init__(self, doors: Doors, name: str, asgi: ASGIApp, host: str, port: int, tls: TlsSettings,
                 guard: Guard, open_routes: tuple[str, ...] = (), grace_s: float = 0, lifespan: bool = False) -> None:
        routes = served_paths(asgi)
        if not set(open_routes) <= set(routes):
            raise ValueError(f"door {name}: open routes {sorted(set(open_routes) - set(routes))} are not served")
        files = _files(tls)
        config = uvicorn.Config(asgi, host=host, port=port, lifespan="on" if lifespan else "off",
                                log_level="warning", access_log=False,
                                timeout_graceful_shutdown=max(1, int(grace_s)) if grace_s else None,
                                ssl_certfile=files[0] if files else None, ssl_keyfile=files[1] if files else None)
        self._server = _Uvicorn(config)
        self._task: asyncio.Task[None] | None = None
        self._doors, self._door = doors, (name, host, files is not None, guard, routes, open_routes)

    @property
    def port(self) -> int:
        """The bound port (the real one when asked for port 0)."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def start(self, reuse_port: bool = False) -> HttpListener:
        name, host, tls, guard, routes, open_routes = self._door
        sock = reusable_socket(host, self._server.config.port, reuse_port)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"http-{name}")
        while not self._server.started:
            if self._task.done():  # could not bind: raise its error here
                await self._task
                raise RuntimeError(f"the {name} HTTP server stopped while starting")
            await asyncio.sleep(0.02)
        self._doors.register(Door(name, "http", host, self.port, tls, guard, routes, open_routes))
        return self

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def start_blobs(doors: Doors, host: str, port: int, common: CommonSettings, tls: TlsSettings,
                      reuse_port: bool = False,
                      auth_required: bool = False) -> BlobServer:
    """The blob port: images at signed, expiring URLs (the signature is the credential), TLS as configured."""
    files = _files(tls)
    context = None
    if files is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*files)
    server = await start_blob_server(host, port, common, context, reuse_port, auth_required)
    doors.register(Door("blobs", "http", host, server.port, files is not None, "signed_url", ("/blobs/{digest}",)))
    return server


def start_metrics(doors: Doors, port: int, host: str, collectors: list[Collector]) -> MetricsServer:
    """Prometheus' /metrics: plaintext and keyless (scrapers), numbers only; who may reach it is the network's call
    (k8s: the monitoring namespace)."""
    server = start_metrics_server(port, host, collectors)
    doors.register(Door("metrics", "http", host, server.port, False, "none", ("/metrics",), ("/metrics",)))
    return server
