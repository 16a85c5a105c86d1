"""The gRPC server: the Fabric API, grpc.health.v1 and server reflection.

Run streams a trajectory: the agent loop runs as its own task and hands events to the stream
through a queue, so Cancel (from this or any other gateway replica, through Redis) can stop it.
A client that goes away cancels its trajectory too.

Every Run stream ends with a `finished` event or a gRPC error status, and the record ends the same way
(gateway/delivery.py). Each running trajectory holds a lease (gateway/leases.py); the reaper resumes the
trajectories of a lost gateway (gateway/resume.py), and Watch re-attaches to any of them. On SIGTERM,
trajectories still running after the grace period are handed to another replica, not cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import redis.asyncio as aredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.exceptions import RedisError

from gateway import recorder, resume
from gateway.admission import Admission, AdmissionRefused
from gateway.celery_executor import CeleryToolExecutor
from gateway.connections import redis_client as make_redis
from gateway.delivery import Delivery
from gateway.exceptions import InvalidRequest
from gateway.leases import Leases, owner_id
from gateway.loop import MODES, AgentLoop, RunSpec
from gateway.validation import RequestValidator
from services.catalog import catalog
from services.common import images, settings
from services.common.blobs import AsyncBlobStore
from services.common.celery_app import make_celery
from services.common.consumers import LiveConsumers
from services.common.errors import BlobNotFound, InvalidImage
from services.common.telemetry import metrics
from services.common.telemetry import setup as telemetry
from services.common.tools import SERVICES
from services.model.chat_template import template_for
from services.model.errors import ModelUnavailable
from services.model.triton_client import TritonModel
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
CANCEL_CHANNEL = "toolfabric:cancel"
_CANCEL_REQUESTED = "toolfabric:cancel-requested:"
SERVICE_NAME = "toolfabric.v1.Fabric"


@dataclass
class _Running:
    task: asyncio.Task[None]
    delivery: Delivery


class FabricServicer(pb_grpc.FabricServicer):
    def __init__(self, loop: AgentLoop, validator: RequestValidator, redis_client: aredis.Redis,
                 blobs: AsyncBlobStore, model: TritonModel, leases: Leases | None = None,
                 admission: Admission | None = None) -> None:
        self._loop, self._validator, self._redis, self._blobs, self._model = loop, validator, redis_client, blobs, model
        self._running: dict[str, _Running] = {}
        self._gw = settings.gateway()
        self._leases = leases or Leases(redis_client, owner_id(), self._gw.lease_ttl_s)
        self._admission = admission or Admission(self._gw.max_running, self._gw.admission_queue,
                                                 self._gw.admission_wait_s)
        self.draining = False

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        try:
            async with self._admission.slot():
                async for event in self._run(request, context):
                    yield event
        except AdmissionRefused as exc:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(int(exc.retry_after_s * 1000))),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    async def _run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway shutting down; send the Run to another replica")
        try:
            spec = await self._validator.validate(request)
            if not await self._model.serves(spec.model):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"model {spec.model!r} is not being served by Triton (not loaded or not ready)")
            record = recorder.TrajectoryRecorder(self._redis, spec.trajectory_id, self._gw.trajectory_ttl_s)
            await record.begin(spec.question, request.mode or pb.MODE_DEEP_RESEARCH, spec.model)
            await resume.save_spec(self._redis, spec)
            await self._leases.acquire(spec.trajectory_id)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        except ModelUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"model_unavailable: {exc}")
            return
        except RedisError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable, no trajectory started: {exc}")
            return
        queue: asyncio.Queue[pb.RunEvent | None] = asyncio.Queue()
        delivery = Delivery(record, spec.trajectory_id, self._gw.record_retry_s, queue)
        # A caller that sends W3C trace context (the SDK does when it traces) gets the trajectory in its trace.
        running = self._start(spec, delivery, context=telemetry.context_from_metadata(context.invocation_metadata()))
        metrics.stream_opened()
        try:
            while (event := await queue.get()) is not None:
                yield event
            if delivery.detached:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"gateway shutting down; trajectory {spec.trajectory_id} goes on on another "
                                    f"replica: Watch it from seq {delivery.last_seq + 1}")
        finally:
            metrics.stream_closed()
            if not running.task.done() and not delivery.detached:  # the client went away: cancel the trajectory
                running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(running.task, return_exceptions=True)

    def _start(self, spec: RunSpec, delivery: Delivery, checkpoint: resume.Checkpoint | None = None,
               context: object | None = None) -> _Running:
        task = asyncio.create_task(self._drive(spec, delivery, checkpoint), name=f"trajectory-{spec.trajectory_id}",
                                   context=context)  # type: ignore[arg-type]
        running = _Running(task, delivery)
        self._running[spec.trajectory_id] = running
        return running

    async def _drive(self, spec: RunSpec, delivery: Delivery, checkpoint: resume.Checkpoint | None) -> None:
        tid = spec.trajectory_id
        try:
            await self._loop.run(spec, delivery.emit, checkpoint, self._leases.owner)
        except asyncio.CancelledError:  # cancelled before the loop was inside its own handling
            if delivery.finished is None and not delivery.detached:
                await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(status=pb.STATUS_CANCELLED,
                                                                                  reason="cancelled")))
        except Exception as exc:  # the loop catches its own faults; this is a fault in emitting them
            log.exception("trajectory %s stopped without finishing", tid)
            if delivery.finished is None:
                await delivery.fail("internal", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if delivery.finished is None and not delivery.detached:
                await delivery.fail("internal", "the trajectory stopped without finishing")
            if self._running.get(tid) is not None and self._running[tid].delivery is delivery:
                del self._running[tid]
            with contextlib.suppress(RedisError):  # else the lease expires and the reaper tidies up
                await self._leases.release(tid, finished=not delivery.detached)
            delivery.close()

    def cancel_local(self, trajectory_id: str) -> bool:
        running = self._running.get(trajectory_id)
        if running is None or running.task.done():
            return False
        running.task.cancel()
        return True

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelResponse:
        tid = request.trajectory_id
        running = self._running.get(tid)
        if running is not None and self.cancel_local(tid):
            await asyncio.wait([running.task], timeout=self._gw.cancel_wait_s)
            return self._cancel_response(running.delivery.finished)
        status = await recorder.status_of(self._redis, tid)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no trajectory {tid!r}")
        if status != pb.STATUS_RUNNING:
            return pb.CancelResponse(cancelled=False, status=pb.Status.Name(status or 0))
        if await self._leases.holder(tid) is None and await self._leases.claim(tid):
            # Its gateway is gone and no replica has taken it over yet: it ends here, as cancelled.
            delivery = await self._take_delivery(tid)
            await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(
                status=pb.STATUS_CANCELLED, reason="cancelled (its gateway had been lost)")))
            await self._leases.release(tid, finished=True)
            return self._cancel_response(delivery.finished)
        # Running on another replica: every gateway listens on the cancel channel. The request is also kept, so a
        # replica taking over from a lost gateway ends it instead of resuming it. Answer with what happened.
        await self._redis.set(_CANCEL_REQUESTED + tid, 1, ex=3600)
        await self._redis.publish(CANCEL_CHANNEL, tid)
        deadline = time.monotonic() + self._gw.cancel_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            status = await recorder.status_of(self._redis, tid)
            if status != pb.STATUS_RUNNING:
                break
        return pb.CancelResponse(cancelled=status == pb.STATUS_CANCELLED, status=pb.Status.Name(status or 0))

    @staticmethod
    def _cancel_response(finished: pb.TrajectoryFinished | None) -> pb.CancelResponse:
        status = finished.status if finished is not None else pb.STATUS_RUNNING
        return pb.CancelResponse(cancelled=status == pb.STATUS_CANCELLED, status=pb.Status.Name(status))

    async def _take_delivery(self, tid: str) -> Delivery:
        found = await recorder.load(self._redis, tid)
        last = max((e.seq for e in found.events), default=0) if found else 0
        return Delivery(recorder.TrajectoryRecorder(self._redis, tid, self._gw.trajectory_ttl_s), tid,
                        self._gw.record_retry_s, first_seq=last)

    async def take_over(self, tid: str) -> None:
        """A trajectory whose lease this gateway just claimed: resume it, or end it with the reason."""
        found = await recorder.load(self._redis, tid)
        if found is None or found.status != pb.STATUS_RUNNING:
            await self._leases.release(tid, finished=True)
            return
        point = resume.checkpoint(found, time.time())
        spec = await resume.load_spec(self._redis, tid)
        delivery = Delivery(recorder.TrajectoryRecorder(self._redis, tid, self._gw.trajectory_ttl_s), tid,
                            self._gw.record_retry_s, first_seq=point.last_seq)
        if point.answer is not None:  # it had answered; only its end was lost
            await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(
                status=pb.STATUS_COMPLETED, reason="the model answered", resumes=point.resumes)))
        elif await self._redis.exists(_CANCEL_REQUESTED + tid):
            await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(
                status=pb.STATUS_CANCELLED, reason="cancelled (its gateway had been lost)", resumes=point.resumes)))
        elif spec is None or not self._gw.resume_lost:
            await delivery.fail("gateway_lost", "gateway lost: its lease expired while the trajectory ran")
        else:
            log.warning("resuming trajectory %s from step %d (its gateway was lost)", tid, point.next_step)
            self._start(spec, delivery, point)
            return
        await self._leases.release(tid, finished=True)

    async def reap(self) -> None:
        """Runs for the gateway's life: finds trajectories whose lease expired and takes them over."""
        while True:
            await asyncio.sleep(self._gw.reaper_interval_s)
            if self.draining:
                return
            try:
                for tid in await self._leases.orphans():
                    if await self._leases.claim(tid):
                        await self.take_over(tid)
            except RedisError as exc:
                log.warning("reaper: Redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("reaper failed; retrying")

    async def drain(self, grace_s: float) -> None:
        """Shutdown: running trajectories get `grace_s` to finish; the rest are handed to another replica
        (their lease released, so a reaper resumes them at once) and their clients told to Watch there."""
        self.draining = True
        tasks = [r.task for r in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        for tid, running in list(self._running.items()):
            if running.task.done():
                continue
            running.delivery.detached = True
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(running.task, return_exceptions=True)
            log.warning("handed trajectory %s to another replica at shutdown", tid)

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        tid, index = request.trajectory_id, 0
        if await recorder.status_of(self._redis, tid) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no trajectory {tid!r} (unknown or its record expired)")
        while True:
            try:
                events = await recorder.events_from(self._redis, tid, index)
                status = await recorder.status_of(self._redis, tid)
            except RedisError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable: {exc}; Watch again from "
                                                                 f"the last seq you received + 1")
                return
            index += len(events)
            for event in events:
                if event.seq >= request.from_seq:
                    yield event
                if event.HasField("finished"):
                    return
            if status != pb.STATUS_RUNNING and not events:
                return  # ended without a recorded `finished` (a record written before this version)
            await asyncio.sleep(self._gw.watch_poll_s)

    async def GetTrajectory(self, request: pb.GetTrajectoryRequest,
                            context: grpc.aio.ServicerContext) -> pb.Trajectory:
        found = await recorder.load(self._redis, request.trajectory_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no trajectory {request.trajectory_id!r} (unknown or its record expired)")
            return pb.Trajectory()
        found.resumes = sum(1 for e in found.events if e.HasField("resumed"))
        if found.status == pb.STATUS_RUNNING:
            found.gateway = await self._leases.holder(request.trajectory_id) or ""
        return found

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

    async def GetImage(self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext) -> pb.Image:
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
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except RedisError as exc:  # Redis restarting: redis-py reconnects and subscribes again
                log.warning("cancel channel: %s; retrying", exc)
                await asyncio.sleep(0.5)
                continue
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
    redis_client = make_redis(common.redis_url, gw)
    blobs = AsyncBlobStore(redis_client, common.blob_ttl_s)
    consumers = LiveConsumers(redis_client, settings.worker().heartbeat_ttl_s)
    executor = CeleryToolExecutor(make_celery(), redis_client, consumers, gw.no_consumer_wait_s, gw.tool_retries,
                                  gw.retry_consumer_wait_s)
    await executor.start()
    model = TritonModel(model_settings.triton_url, model_settings.stream_idle_timeout_s,
                        model_settings.reconnect_backoff_max_s)
    loop = AgentLoop(model, executor, blobs, catalog(),
                     lambda name: template_for(name, model_settings.templates, model_settings.default_template), gw)
    validator = RequestValidator(gw, model_settings, common, blobs, _download_image)
    leases = Leases(redis_client, owner_id(), gw.lease_ttl_s)
    servicer = FabricServicer(loop, validator, redis_client, blobs, model, leases)

    options = [("grpc.max_receive_message_length", 2 * gw.max_message_bytes),
               ("grpc.max_send_message_length", 2 * gw.max_message_bytes),
               ("grpc.server_max_unrequested_time_in_server", gw.accept_wait_s)]
    server = grpc.aio.server(options=options)
    pb_grpc.add_FabricServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (pb.DESCRIPTOR.services_by_name["Fabric"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{gw.host}:{gw.port}")
    await server.start()
    cancel_listener = asyncio.create_task(_listen_for_cancel(redis_client, servicer))
    renewer = asyncio.create_task(leases.keep_renewing(), name="lease-renewal")
    reaper = asyncio.create_task(servicer.reap(), name="lease-reaper")
    blob_server = None
    if gw.blob_http_port:
        # Signed, expiring image URLs for providers that must fetch an image (reverse image search).
        from services.common.blob_urls import start_blob_server

        blob_server = await start_blob_server(gw.host, gw.blob_http_port)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    readiness = asyncio.create_task(_watch_readiness(health_servicer, redis_client, model,
                                                     model_settings.default_model, gw.readiness_interval_s))
    log.info("gateway listening on %s:%d", gw.host, port)

    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # Everything allocated at start-up (modules, stubs, schemas) moves out of the collector's reach: a full
    # collection then walks only what serving allocates, not a ~100 ms pause on the event loop.
    gc.freeze()
    if ready:
        ready.set()
    await stop.wait()
    readiness.cancel()
    await health_servicer.enter_graceful_shutdown()
    await asyncio.sleep(gw.shutdown_delay_s)
    # Running trajectories get the grace period, then go to another replica (not cancelled).
    await servicer.drain(gw.shutdown_grace_s)
    await server.stop(grace=1.0)
    for task in (cancel_listener, renewer, reaper):
        task.cancel()
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
