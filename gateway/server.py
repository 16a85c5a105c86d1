"""The gRPC server: the Fabric API, grpc.health.v1 and server reflection.

Run streams a trajectory: the agent loop runs as its own task and hands events to the stream
through a queue, so Cancel (from this or any other gateway replica, through Redis) can stop it.
A client that goes away cancels its trajectory too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator

import grpc
import redis.asyncio as aredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway import recorder
from gateway.auth import Authenticator, AuthInterceptor, Principal, announce, make_authenticator
from gateway.celery_executor import CeleryToolExecutor
from gateway.exceptions import InvalidRequest, LimitExceeded, NotYours, Unauthenticated
from gateway.http import HttpServer, create_app
from gateway.loop import MODES, AgentLoop
from gateway.runs import Runs
from gateway.tenants import Tenants
from gateway.tls import bind_grpc, start_health_port
from gateway.validation import RequestValidator
from services.catalog import catalog
from services.common import images, settings
from services.common.blobs import AsyncBlobStore
from services.common.celery_app import make_celery
from services.common.errors import BlobNotFound, InvalidImage
from services.common.telemetry import metrics
from services.common.telemetry import setup as telemetry
from services.common.tools import SERVICES
from services.model.chat_template import template_for
from services.model.triton_client import TritonModel
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
CANCEL_CHANNEL = "toolfabric:cancel"
SERVICE_NAME = "toolfabric.v1.Fabric"


class FabricServicer(pb_grpc.FabricServicer):
    def __init__(self, runs: Runs, redis_client: aredis.Redis, blobs: AsyncBlobStore, auth: Authenticator) -> None:
        self._runs, self._redis, self._blobs, self._auth = runs, redis_client, blobs, auth
        self._gw = settings.gateway()

    async def _allowed(self, context: grpc.aio.ServicerContext, trajectory_id: str | None = None,
                       blob: str | None = None) -> Principal:
        """The caller (the interceptor has checked its key); NOT_FOUND for another tenant's trajectory or image."""
        try:
            principal = await self._auth.principal_of(context.invocation_metadata())
            if trajectory_id is not None:
                await self._runs.tenants.check_trajectory(principal, trajectory_id)
            if blob is not None:
                await self._runs.tenants.check_image(principal, blob)
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except NotYours as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return principal

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        principal = await self._allowed(context)
        try:
            spec = await self._runs.prepare(request, principal)
        except NotYours as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            return
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        except LimitExceeded as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                                (("retry-after", str(int(exc.retry_after_s))),))
            return
        trace_context = telemetry.context_from_metadata(context.invocation_metadata())
        async with contextlib.aclosing(self._runs.stream(spec, request.mode, trace_context)) as events:
            async for event in events:
                yield event

    def cancel_local(self, trajectory_id: str) -> bool:
        return self._runs.cancel_local(trajectory_id)

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelResponse:
        tid = request.trajectory_id
        await self._allowed(context, tid)
        if self.cancel_local(tid):
            return pb.CancelResponse(cancelled=True, status=pb.Status.Name(pb.STATUS_CANCELLED))
        status = await recorder.status_of(self._redis, tid)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no trajectory {tid!r}")
        if status == pb.STATUS_RUNNING:
            # Running on another replica: every gateway listens on the cancel channel.
            await self._redis.publish(CANCEL_CHANNEL, tid)
            return pb.CancelResponse(cancelled=True, status=pb.Status.Name(pb.STATUS_CANCELLED))
        return pb.CancelResponse(cancelled=False, status=pb.Status.Name(status or 0))

    async def GetTrajectory(self, request: pb.GetTrajectoryRequest,
                            context: grpc.aio.ServicerContext) -> pb.Trajectory:
        await self._allowed(context, request.trajectory_id)
        found = await recorder.load(self._redis, request.trajectory_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no trajectory {request.trajectory_id!r} (unknown or its record expired)")
        return found  # type: ignore[return-value]

    async def ListTools(self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext) -> pb.ListToolsResponse:
        await self._allowed(context)
        cat = catalog()
        mode = MODES.get(request.mode)
        specs = cat.visible(mode) if mode else [s for s in cat.specs if not s.hidden]
        by_name = {v: k for k, v in MODES.items()}
        return pb.ListToolsResponse(tools=[
            pb.Tool(name=s.name, service=s.service, description=s.description,
                    parameters_json_schema=json.dumps(s.json_schema()), aliases=list(s.aliases),
                    modes=sorted(by_name[m] for m in s.modes))
            for s in specs
        ])

    async def GetImage(self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext) -> pb.Image:
        await self._allowed(context, blob=request.blob)
        try:
            data = await self._blobs.get(request.blob)
        except BlobNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        try:
            info = images.inspect(data, settings.common().max_image_pixels)
        except InvalidImage:
            return pb.Image(blob=request.blob, data=data, mime_type="application/octet-stream")
        return pb.Image(blob=request.blob, data=data, mime_type=info.mime_type, width=info.width, height=info.height)


async def _download_image(url: str, max_bytes: int) -> bytes:
    # The fetch service's SSRF guard protects the gateway's own downloads too.
    from services.web.client import fetch_image_bytes

    return await fetch_image_bytes(url, max_bytes)


async def _listen_for_cancel(redis_client: aredis.Redis, servicer: FabricServicer) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(CANCEL_CHANNEL)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message and message.get("type") == "message":
                servicer.cancel_local(message["data"].decode())
    finally:
        await pubsub.aclose()


async def _is_ready(redis_client: aredis.Redis, model: TritonModel, default_model: str) -> bool:
    try:
        async with asyncio.timeout(4):
            return bool(await redis_client.ping()) and await model.ready(default_model)
    except Exception:  # unreachable is simply not ready
        return False


async def _watch_readiness(health_servicer: health.aio.HealthServicer, redis_client: aredis.Redis,
                           model: TritonModel, default_model: str, interval_s: float) -> None:
    """The Fabric service is ready only while Redis answers and the default model is loaded."""
    while True:
        ready = await _is_ready(redis_client, model, default_model)
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await health_servicer.set(SERVICE_NAME, status)
        await asyncio.sleep(interval_s)


async def _start_http_api(runs: Runs, auth: Authenticator, redis_client: aredis.Redis, model: TritonModel,
                          default_model: str, draining: asyncio.Event) -> HttpServer | None:
    """The OpenAI-compatible HTTP API in this process, when TOOLFABRIC_HTTP_PORT is set."""
    http = settings.http()
    if not http.port:
        return None

    async def ready() -> bool:  # like the Fabric service's health: not while draining
        return not draining.is_set() and await _is_ready(redis_client, model, default_model)

    tls = settings.tls()
    api = HttpServer(create_app(runs, auth, http, ready), http.host, http.port, settings.gateway().shutdown_grace_s,
                     certfile=tls.cert_file or None, keyfile=tls.key_file or None)
    await api.start()
    log.info("HTTP API listening on %s:%d", http.host, api.port)
    return api


async def serve(ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (or `stop` is set)."""
    common, gw, model_settings = settings.common(), settings.gateway(), settings.model()
    redis_client = aredis.Redis.from_url(common.redis_url)
    blobs = AsyncBlobStore(redis_client, common.blob_ttl_s)
    executor = CeleryToolExecutor(make_celery(), redis_client)
    await executor.start()
    model = TritonModel(model_settings.triton_url, model_settings.stream_idle_timeout_s)
    loop = AgentLoop(model, executor, blobs, catalog(),
                     lambda name: template_for(name, model_settings.templates, model_settings.default_template), gw)
    validator = RequestValidator(gw, model_settings, common, blobs, _download_image)
    auth_settings = settings.auth()
    auth = make_authenticator(auth_settings)
    runs = Runs(loop, validator, redis_client, model, gw, Tenants(redis_client, auth_settings, common.blob_ttl_s),
                blobs)
    servicer = FabricServicer(runs, redis_client, blobs, auth)

    options = [("grpc.max_receive_message_length", 2 * gw.max_message_bytes),
               ("grpc.max_send_message_length", 2 * gw.max_message_bytes)]
    server = grpc.aio.server(options=options, interceptors=[AuthInterceptor(auth)])
    pb_grpc.add_FabricServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (pb.DESCRIPTOR.services_by_name["Fabric"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = bind_grpc(server, f"{gw.host}:{gw.port}", settings.tls())
    announce(auth_settings)
    await server.start()
    health_port = await start_health_port(health_servicer, gw.host, settings.tls().health_port) \
        if settings.tls().health_port else None
    cancel_listener = asyncio.create_task(_listen_for_cancel(redis_client, servicer))
    blob_server = None
    if gw.blob_http_port:
        # Signed, expiring image URLs for providers that must fetch an image (reverse image search).
        from services.common.blob_urls import start_blob_server

        blob_server = await start_blob_server(gw.host, gw.blob_http_port)
    stop = stop or asyncio.Event()
    http_api = await _start_http_api(runs, auth, redis_client, model, model_settings.default_model, stop)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    readiness = asyncio.create_task(_watch_readiness(health_servicer, redis_client, model,
                                                     model_settings.default_model, gw.readiness_interval_s))
    log.info("gateway listening on %s:%d", gw.host, port)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if ready:
        ready.set()
    await stop.wait()
    readiness.cancel()
    await health_servicer.enter_graceful_shutdown()
    await asyncio.sleep(gw.shutdown_delay_s)
    # New calls are refused from here; running trajectories get the grace period, then are cancelled.
    await asyncio.gather(server.stop(grace=gw.shutdown_grace_s), *([http_api.stop()] if http_api else []),
                         *([health_port.stop(grace=None)] if health_port else []))
    cancel_listener.cancel()
    if blob_server is not None:
        await blob_server.stop()
    await executor.close()
    await model.close()
    await redis_client.aclose()


def main() -> None:
    logging.basicConfig(level=settings.common().log_level)
    telemetry.setup_telemetry("toolfabric-gateway")
    port = settings.gateway().metrics_port
    endpoint = metrics.start_metrics_server(
        port, settings.telemetry().metrics_host,
        collectors=[metrics.QueueDepthCollector(settings.common().redis_url, SERVICES)]) if port else None
    try:
        asyncio.run(serve())
    finally:
        if endpoint:
            endpoint.close()
        telemetry.shutdown_telemetry()  # export the last spans
