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
from typing import cast

import grpc
import redis.asyncio as aredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway import recorder
from gateway.archive import Archive, check_labels
from gateway.celery_executor import CeleryToolExecutor
from gateway.exceptions import InvalidRequest
from gateway.loop import MODES, AgentLoop, Emit, RunSpec
from gateway.reflection import enable_server_reflection
from gateway.request_decoding import RejectUndecodableRequests
from gateway.step import StepService
from gateway.step import protos as step_protos
from gateway.validation import RequestValidator, check_length
from services.catalog import catalog, service_names
from services.common import images, settings
from services.common.blobs import AsyncBlobStore
from services.common.celery_app import make_celery
from services.common.errors import BlobNotFound, InvalidImage
from services.common.telemetry import metrics
from services.common.telemetry import setup as telemetry
from services.model.dialects import dialect_for
from services.model.dialects.registry import check as check_dialects
from services.model.triton_client import TritonModel
from services.store import open_store
from services.store.errors import BadPageToken, StoreUnavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc
from toolfabric.v1.names import FABRIC_SERVICE

log = logging.getLogger(__name__)
CANCEL_CHANNEL = "toolfabric:cancel"
SERVICE_NAME = FABRIC_SERVICE


class FabricServicer(pb_grpc.FabricServicer):
    def __init__(self, loop: AgentLoop, validator: RequestValidator, redis_client: aredis.Redis,
                 blobs: AsyncBlobStore, model: TritonModel, archive: Archive | None = None,
                 step: StepService | None = None) -> None:
        self._loop, self._validator, self._redis, self._blobs, self._model = loop, validator, redis_client, blobs, model
        self._archive = archive
        self._step = step
        self._running: dict[str, asyncio.Task[tuple[pb.Status, str]]] = {}
        self._gw = settings.gateway()

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        try:
            spec = await self._validator.validate(request)
            check_labels(request)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        if not await self._model.ready(spec.model):
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"model {spec.model!r} is not being served by Triton (not loaded or not ready)")
            return
        queue: asyncio.Queue[pb.RunEvent | None] = asyncio.Queue()
        if self._archive is not None:
            self._archive.begin(spec, request)
        record = recorder.TrajectoryRecorder(self._redis, spec.trajectory_id, self._gw.trajectory_ttl_s,
                                             mirror=self._archive.event if self._archive else None)
        await record.begin(spec.question, request.mode or pb.MODE_DEEP_RESEARCH, spec.model)

        async def emit(event: pb.RunEvent) -> None:
            await record.record(event)
            queue.put_nowait(event)

        # A caller that sends W3C trace context (the SDK does when it traces) gets the trajectory in its trace.
        task = asyncio.create_task(self._drive(spec, emit, queue), name=f"trajectory-{spec.trajectory_id}",
                                   context=telemetry.context_from_metadata(context.invocation_metadata()))
        self._running[spec.trajectory_id] = task
        metrics.stream_opened()
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            metrics.stream_closed()
            if not task.done():  # the client went away: the trajectory is cancelled
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(task, return_exceptions=True)
            self._running.pop(spec.trajectory_id, None)

    async def _drive(self, spec: RunSpec, emit: Emit,
                     queue: asyncio.Queue[pb.RunEvent | None]) -> tuple[pb.Status, str]:
        try:
            return await self._loop.run(spec, emit)
        finally:
            queue.put_nowait(None)

    async def _checked_id(self, value: str, context: grpc.aio.ServicerContext, name: str = "trajectory_id") -> str:
        try:
            check_length(name, value, self._gw.max_id_chars)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return value

    def cancel_local(self, trajectory_id: str) -> bool:
        task = self._running.get(trajectory_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelResponse:
        tid = await self._checked_id(request.trajectory_id, context)
        if self.cancel_local(tid):
            return _cancel_response(True, pb.STATUS_CANCELLED)
        status = await recorder.status_of(self._redis, tid)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no trajectory {tid!r}")
        if status == pb.STATUS_RUNNING:
            # Running on another replica: every gateway listens on the cancel channel.
            await self._redis.publish(CANCEL_CHANNEL, tid)
            return _cancel_response(True, pb.STATUS_CANCELLED)
        return _cancel_response(False, cast(pb.Status, status or 0))

    async def GetTrajectory(self, request: pb.GetTrajectoryRequest,
                            context: grpc.aio.ServicerContext) -> pb.Trajectory:
        await self._checked_id(request.trajectory_id, context)
        found = await recorder.load(self._redis, request.trajectory_id)
        if found is not None and self._archive is not None:
            await self._archive.add_stored_fields(found)
        if found is None and self._archive is not None:  # Redis expired it: the durable store keeps it
            found = await self._archive.trajectory(request.trajectory_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no trajectory {request.trajectory_id!r} (unknown or its record expired)")
        return found  # type: ignore[return-value]

    async def ListTools(self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext) -> pb.ListToolsResponse:
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

    async def Step(self, request: pb.StepRequest, context: grpc.aio.ServicerContext) -> pb.StepResponse:
        if self._step is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this gateway serves no step API")
        try:
            outcomes = await self._step.step(step_protos.items(request))  # type: ignore[union-attr]
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return step_protos.response(outcomes)

    async def GetImage(self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext) -> pb.Image:
        await self._checked_id(request.blob, context, "blob")
        try:
            data = await self._blobs.get(request.blob)
        except BlobNotFound as exc:
            stored = await self._archive.image(request.blob) if self._archive is not None else None
            if stored is not None:
                return stored
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        try:
            info = images.inspect(data, settings.common().max_image_pixels)
        except InvalidImage:
            return pb.Image(blob=request.blob, data=data, mime_type="application/octet-stream")
        return pb.Image(blob=request.blob, data=data, mime_type=info.mime_type, width=info.width, height=info.height)

    async def ListTrajectories(self, request: pb.ListTrajectoriesRequest,
                               context: grpc.aio.ServicerContext) -> pb.ListTrajectoriesResponse:
        if self._archive is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this gateway has no durable store")
        try:
            return await self._archive.list_page(request)  # type: ignore[union-attr]
        except (InvalidRequest, BadPageToken) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise


def _cancel_response(cancelled: bool, status: pb.Status) -> pb.CancelResponse:
    # `status` (the name) stays filled for v1 clients that read it; `trajectory_status` is the enum.
    return pb.CancelResponse(cancelled=cancelled, status=pb.Status.Name(status), trajectory_status=status)


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


async def _watch_readiness(health_servicer: health.aio.HealthServicer, redis_client: aredis.Redis,
                           model: TritonModel, default_model: str, interval_s: float) -> None:
    """The Fabric service is ready only while Redis answers and the default model is loaded."""
    while True:
        try:
            async with asyncio.timeout(4):
                ready = bool(await redis_client.ping()) and await model.ready(default_model)
        except Exception:  # unreachable is simply not ready
            ready = False
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await health_servicer.set(SERVICE_NAME, status)
        await asyncio.sleep(interval_s)


async def serve(ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (or `stop` is set)."""
    common, gw, model_settings = settings.common(), settings.gateway(), settings.model()
    redis_client = aredis.Redis(connection_pool=aredis.BlockingConnectionPool.from_url(
        common.redis_url, max_connections=gw.redis_max_connections, timeout=gw.redis_connection_wait_s))
    blobs = AsyncBlobStore(redis_client, common.blob_ttl_s)
    executor = CeleryToolExecutor(make_celery(), redis_client)
    await executor.start()
    model = TritonModel(model_settings.triton_url, model_settings.stream_idle_timeout_s)
    check_dialects(model_settings.dialects, model_settings.default_dialect)
    loop = AgentLoop(model, executor, blobs, catalog(),
                     lambda name: dialect_for(name, model_settings.dialects, model_settings.default_dialect),
                     gw)
    validator = RequestValidator(gw, model_settings, common, blobs, _download_image)
    archive = Archive(await asyncio.to_thread(open_store, settings.store(), common), common.redis_url,
                      common.blob_ttl_s, settings.store()).start()
    step_settings = settings.step()
    step = StepService(loop, validator, redis_client, blobs, step_settings, gw, model_settings.default_model)
    servicer = FabricServicer(loop, validator, redis_client, blobs, model, archive, step)

    options = [("grpc.max_receive_message_length", 2 * gw.max_message_bytes),
               ("grpc.max_send_message_length", 2 * gw.max_message_bytes)]
    server = grpc.aio.server(options=options, interceptors=[RejectUndecodableRequests()])
    pb_grpc.add_FabricServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_server_reflection((FABRIC_SERVICE, health.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{gw.host}:{gw.port}")
    await server.start()
    cancel_listener = asyncio.create_task(_listen_for_cancel(redis_client, servicer))
    blob_server = None
    if gw.blob_http_port:
        # Signed, expiring image URLs for providers that must fetch an image (reverse image search).
        from services.common.blob_urls import start_blob_server

        blob_server = await start_blob_server(gw.host, gw.blob_http_port)
    doors = contextlib.AsyncExitStack()
    if step_settings.http_port:
        # verl-tool's POST /get_observation, for RL trainers.
        from gateway.step import http as step_http

        await doors.enter_async_context(step_http.serving(
            step_http.app(step, blobs, step_settings.max_request_bytes), gw.host, step_settings.http_port))
    if settings.mcp().http_port:
        # The tools as an MCP server (streamable HTTP at /mcp), for agent frameworks.
        from gateway.mcp.server import FabricMcp
        from gateway.step import http as step_http

        mcp_app = FabricMcp(step, blobs, catalog(), settings.mcp()).server.streamable_http_app(host=gw.host)
        await doors.enter_async_context(step_http.serving(mcp_app, gw.host, settings.mcp().http_port, "on"))
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    readiness = asyncio.create_task(_watch_readiness(health_servicer, redis_client, model,
                                                     model_settings.default_model, gw.readiness_interval_s))
    log.info("gateway listening on %s:%d", gw.host, port)

    stop = stop or asyncio.Event()
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
    await server.stop(grace=gw.shutdown_grace_s)
    cancel_listener.cancel()
    if blob_server is not None:
        await blob_server.stop()
    await doors.aclose()
    await executor.close()
    await archive.close()  # after the server stopped: every event of every trajectory is written
    await model.close()
    await redis_client.aclose()


def main() -> None:
    logging.basicConfig(level=settings.common().log_level)
    telemetry.setup_telemetry("toolfabric-gateway")
    port = settings.gateway().metrics_port
    endpoint = metrics.start_metrics_server(
        port, settings.telemetry().metrics_host,
        collectors=[metrics.QueueDepthCollector(settings.common().redis_url, service_names())]) if port else None
    try:
        asyncio.run(serve())
    finally:
        if endpoint:
            endpoint.close()
        telemetry.shutdown_telemetry()  # export the last spans
