"""The gRPC server: the Fabric API, grpc.health.v1 and server reflection.

Run streams a trajectory (gateway/runs.py, shared with the HTTP API): the agent loop runs as its own task and
hands events to the stream through a queue, so Cancel (from this or any other gateway replica, through Redis)
can stop it. A client that goes away cancels its trajectory too.

Every Run stream ends with a `finished` event or a gRPC error status, and the record ends the same way
(gateway/delivery.py). Each running trajectory holds a lease (gateway/leases.py); the reaper resumes the
trajectories of a lost gateway (engine/resume.py), and Watch re-attaches to any of them. On SIGTERM,
trajectories still running after the grace period are handed to another replica, not cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal

import grpc
import redis.asyncio as aredis
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from redis.exceptions import RedisError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc
from toolfabric.v1.names import FABRIC_SERVICE
from toolfabric_server.catalog import full_catalog
from toolfabric_server.common import logs
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.consumers import LiveConsumers
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.common.telemetry import setup as telemetry
from toolfabric_server.common.tools import Catalog
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.gateway import erasure
from toolfabric_server.gateway.archive import Archive
from toolfabric_server.gateway.celery_executor import CeleryToolExecutor
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.connections import redis_pair
from toolfabric_server.gateway.fabric import FabricServicer
from toolfabric_server.gateway.http import create_app
from toolfabric_server.gateway.leases import Leases, owner_id
from toolfabric_server.gateway.policy import Policy, make_policy
from toolfabric_server.gateway.policy.authentication import announce
from toolfabric_server.gateway.policy.listeners import (
    HttpListener,
    bind_grpc,
    grpc_options,
    start_blobs,
    start_health_port,
    start_metrics,
)
from toolfabric_server.gateway.process_settings import GatewayProcessSettings
from toolfabric_server.gateway.reflection import REFLECTION_SERVICES, enable_server_reflection
from toolfabric_server.gateway.request_decoding import RejectUndecodableRequests
from toolfabric_server.gateway.runs import CANCEL_CHANNEL, Runs
from toolfabric_server.gateway.stepping import StepService
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.dialects import dialect_for
from toolfabric_server.model.dialects.registry import check as check_dialects
from toolfabric_server.model.routing import ModelRouter
from toolfabric_server.model.tokenizer import load_tokenizers
from toolfabric_server.store import open_store
from toolfabric_server.web.client import image_downloader

log = logging.getLogger(__name__)
SERVICE_NAME = FABRIC_SERVICE


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


async def _is_ready(redis_client: aredis.Redis, model: ModelRouter, default_model: str) -> bool:
    try:
        async with asyncio.timeout(4):
            return bool(await redis_client.ping()) and await model.ready(default_model)
    except Exception:  # unreachable is simply not ready
        return False


async def _watch_readiness(health_servicer: health.aio.HealthServicer, redis_client: aredis.Redis,
                           model: ModelRouter, default_model: str, interval_s: float) -> None:
    """The Fabric service is ready only while Redis answers and the default model is loaded."""
    while True:
        ready = await _is_ready(redis_client, model, default_model)
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await health_servicer.set(SERVICE_NAME, status)
        await asyncio.sleep(interval_s)


_FABRIC_METHODS = tuple(f"/{FABRIC_SERVICE}/{m.name}" for m in pb.DESCRIPTOR.services_by_name["Fabric"].methods)
_HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
# Served without a key on the gRPC port (gateway/policy/grpc.py's OPEN_SERVICES): probes and service descriptions.
_OPEN_METHODS = (*_HEALTH_METHODS, *(f"/{service}/ServerReflectionInfo" for service in REFLECTION_SERVICES))


async def _open_doors(doors: contextlib.AsyncExitStack, config: GatewayProcessSettings, policy: Policy, runs: Runs,
                      step: StepService, blobs: AsyncBlobStore, redis_client: aredis.Redis, model: ModelRouter,
                      default_model: str, draining: asyncio.Event, tools: Catalog) -> None:
    """The HTTP doors asked for in the settings, each behind the policy, each through policy/listeners.py."""
    gw, tls = config.gateway, config.tls

    async def listen(listener: HttpListener) -> None:
        await listener.start(gw.reuse_port)
        doors.push_async_callback(listener.stop)

    http = config.http
    if http.port:  # the OpenAI-compatible chat API
        async def ready() -> bool:  # like the Fabric service's health: not while draining
            return not draining.is_set() and await _is_ready(redis_client, model, default_model)

        await listen(HttpListener(policy.doors, "chat", create_app(runs, policy, http, ready), http.host, http.port,
                                  tls, policy.guard, ("/healthz", "/readyz"), gw.shutdown_grace_s))
    step_conf = config.step
    if step_conf.http_port:  # verl-tool's POST /get_observation, for RL trainers
        from toolfabric_server.gateway.step import http as step_http

        await listen(HttpListener(policy.doors, "step", policy.http(step_http.app(step, blobs,
                                                                                   step_conf.max_request_bytes),
                                                                     open_paths=("/health",)),
                                  gw.host, step_conf.http_port, tls, policy.guard, ("/health",)))
    mcp = config.mcp
    if mcp.http_port:  # the tools as an MCP server (streamable HTTP at /mcp), for agent frameworks
        from toolfabric_server.gateway.mcp.server import FabricMcp, TenantSessions

        mcp_app = FabricMcp(step, blobs, tools, mcp).server.streamable_http_app(host=gw.host)
        await listen(HttpListener(policy.doors, "mcp", policy.http(TenantSessions(mcp_app)), gw.host, mcp.http_port,
                                  tls, policy.guard, lifespan=True))
    if gw.metrics_port:  # Prometheus, for the monitoring namespace (the NetworkPolicy keeps everyone else out)
        endpoint = start_metrics(policy.doors, gw.metrics_port, config.telemetry.metrics_host,
                                 [metrics.QueueDepthCollector(config.common.redis_url, tools.services())])
        doors.callback(endpoint.close)
    if gw.blob_http_port:  # signed, expiring image URLs for providers that must fetch an image
        blob_server = await start_blobs(policy.doors, gw.host, gw.blob_http_port, config.common, tls, gw.reuse_port,
                                        config.auth.required)
        doors.push_async_callback(blob_server.stop)


async def serve(config: GatewayProcessSettings, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (or `stop` is set), with the settings read at start."""
    common, gw, model_settings, worker = config.common, config.gateway, config.model, config.worker
    # The signals are ours before any door opens: a SIGTERM that lands while the gateway is still starting (its
    # HTTP doors already answering) is a drain once it has started, not the default action killing it mid-request.
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    redis_client, cache_client = redis_pair(common, gw)
    # Refuses settings it cannot run with before anything starts.
    policy = make_policy(redis_client, config.auth, common, gw, config.store)
    blobs = AsyncBlobStore(cache_client, common.blob_ttl_s)
    consumers = LiveConsumers(redis_client, worker.heartbeat_ttl_s)
    executor = CeleryToolExecutor(make_celery(common, worker), redis_client, consumers, gw.no_consumer_wait_s,
                                  gw.tool_retries, gw.retry_consumer_wait_s, gw.unstarted_timeout_s,
                                  gw.calls_per_message, gw.batched_messages_in_flight)
    await executor.start()
    model = ModelRouter.from_settings(model_settings)  # Triton, or a completions server per model name
    check_dialects(model_settings.dialects, model_settings.default_dialect)
    tokenizers = load_tokenizers(model_settings.checkpoints)
    # Every tool this gateway offers, the MCP servers' listed once, now.
    tools = await asyncio.to_thread(full_catalog, config.mcp_client, config.fetch)
    loop = AgentLoop(model, executor, blobs, tools,
                     lambda name: dialect_for(name, model_settings.dialects, model_settings.default_dialect),
                     gw, tokenizers.get, channels=ChannelTracker,
                     capture_content=config.telemetry.capture_content, text_window_s=gw.text_window_ms / 1000)
    # The fetch service's SSRF guard protects the gateway's own downloads too.
    validator = RequestValidator(gw, model_settings, common, blobs, image_downloader(config.fetch), tools)
    archive = Archive(await asyncio.to_thread(open_store, config.store, common), common, config.store,
                      functools.partial(erasure.purge, common=common)).start()
    leases = Leases(redis_client, owner_id(), gw.lease_ttl_s)
    runs = Runs(loop, validator, redis_client, model, gw, policy, blobs, leases, archive)
    step = StepService(loop, validator, redis_client, blobs, config.step, gw, model_settings.default_model,
                       policy)
    servicer = FabricServicer(runs, redis_client, blobs, policy, gw, common, tools, archive, step)

    options = [("grpc.max_receive_message_length", 2 * gw.max_message_bytes),
               ("grpc.max_send_message_length", 2 * gw.max_message_bytes),
               ("grpc.server_max_unrequested_time_in_server", gw.accept_wait_s), *grpc_options(gw.reuse_port)]
    # Undecodable bytes are refused before the key is even looked at (INVALID_ARGUMENT, not UNKNOWN).
    server = grpc.aio.server(options=options, interceptors=[RejectUndecodableRequests(), policy.interceptor()])
    pb_grpc.add_FabricServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_server_reflection((FABRIC_SERVICE, health.SERVICE_NAME), server)
    port = bind_grpc(policy.doors, server, "fabric", gw.host, gw.port, config.tls, policy.guard,
                     (*_FABRIC_METHODS, *_OPEN_METHODS), _OPEN_METHODS)
    announce(config.auth)
    await server.start()
    health_port = await start_health_port(policy.doors, health_servicer, gw.host, config.tls.health_port,
                                          gw.reuse_port) \
        if config.tls.health_port else None
    cancel_listener = asyncio.create_task(_listen_for_cancel(redis_client, servicer))
    renewer = asyncio.create_task(leases.keep_renewing(), name="lease-renewal")
    reaper = asyncio.create_task(runs.reap(), name="lease-reaper")
    doors = contextlib.AsyncExitStack()
    try:
        await _open_doors(doors, config, policy, runs, step, blobs, redis_client, model, model_settings.default_model,
                          stop, tools)
    except BaseException:  # e.g. a port taken (Errno 98): close what started, so the process exits and says why
        await asyncio.gather(server.stop(grace=None), *([health_port.stop(grace=None)] if health_port else []))
        for task in (cancel_listener, renewer, reaper):
            task.cancel()
        await doors.aclose()
        await executor.close()
        await archive.close()
        await model.close()
        raise
    policy.doors.publish(gw.doors_file)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    readiness = asyncio.create_task(_watch_readiness(health_servicer, redis_client, model,
                                                     model_settings.default_model, gw.readiness_interval_s))
    log.info("gateway listening on %s:%d", gw.host, port)

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
    await runs.drain(gw.shutdown_grace_s)
    await asyncio.gather(server.stop(grace=1.0), *([health_port.stop(grace=None)] if health_port else []))
    for task in (cancel_listener, renewer, reaper):
        task.cancel()
    await doors.aclose()
    await executor.close()
    await archive.close()  # after the server stopped: every event of every trajectory is written
    await model.close()
    await redis_client.aclose()
    if cache_client is not redis_client:
        await cache_client.aclose()


def main() -> None:
    config = GatewayProcessSettings.read()  # the one read of the environment; everything below is passed it
    logs.install(config.common.log_level)
    # The gateway's own Redis commands (records, leases, results: hundreds per trajectory) are bookkeeping: a span
    # each was most of a trajectory's spans and a tenth of the gateway's CPU. Record writes are span events instead
    # (gateway/delivery.py); the workers' Redis calls, the tools' own, stay spans.
    telemetry.setup_telemetry("toolfabric-gateway", telemetry.traces_file(config.common, config.telemetry),
                              trace_redis=False)
    try:
        # uvloop: the gateway is an event loop doing small per-event work for every trajectory (issue 24); libuv's
        # loop costs a fraction of asyncio's per callback.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(config))
    except OSError as exc:  # a door could not bind: a clear line and exit code 3, not a traceback
        log.error("the gateway cannot serve: %s", exc)
        raise SystemExit(3) from exc
    finally:
        telemetry.shutdown_telemetry()  # export the last spans
