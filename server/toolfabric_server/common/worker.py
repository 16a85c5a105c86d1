"""Registers a service's tools as its one Celery task and runs its worker process.

Every failure inside a tool becomes a `ToolResult` with `ok=False`: a bad call never raises
out of the task, so a worker never dies of one and the loop always gets an observation.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import Celery, Task, bootsteps, signals
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError

from toolfabric_server.common import consumers, logs, redis_clients, revocations, unacked
from toolfabric_server.common.bridge import close_all as close_bridges
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.errors import ToolError
from toolfabric_server.common.settings import CommonSettings, TelemetrySettings, WorkerSettings
from toolfabric_server.common.telemetry import observe
from toolfabric_server.common.telemetry.run_span import run_span, task_carrier
from toolfabric_server.common.telemetry.setup import setup_worker_telemetry
from toolfabric_server.common.tools import (
    PingArgs,
    ToolContext,
    ToolPlugin,
    ToolResult,
    ToolSpec,
    describe_validation_error,
    task_name,
)

log = logging.getLogger(__name__)

Handler = Callable[[Any, ToolContext], ToolResult]


def _ping(args: PingArgs, ctx: ToolContext) -> ToolResult:
    return ToolResult(text=args.payload or "pong")


def register_service(app: Celery, service: str, specs: list[ToolSpec], handlers: dict[str, Handler],
                     common: CommonSettings) -> Task:
    """Create `toolfabric.<service>.call` on `app`, dispatching by tool name to `handlers`."""
    revoked = _revocations(common)
    by_name: dict[str, tuple[type[BaseModel], Handler]] = {"ping": (PingArgs, _ping)}
    for spec in specs:
        if spec.name not in handlers:
            raise ValueError(f"tool {spec.name} of {service} has no handler")
        for name in (spec.name, *spec.aliases):
            by_name[name] = (spec.arguments, handlers[spec.name])

    @app.task(name=task_name(service), bind=True)
    def call(self: Any, tool: str, arguments: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        request = self.request
        # The broker delivered it again (its pool process died mid-call): it has run before.
        redelivered = bool((request.delivery_info or {}).get("redelivered"))
        with run_span(self.name, task_carrier(request), {
            "gen_ai.tool.name": tool, "gen_ai.tool.call.id": str(context.get("call_id", "")),
            "messaging.message.id": request.id or "", "toolfabric.redelivered": redelivered,
        }):
            if request.id and revoked(request.id):  # abandoned while queued: nobody waits for it
                result = ToolResult.failure("cancelled", f"{tool} was revoked before it ran")
                observe.failed("cancelled", result.text)
                return result.model_dump(mode="json")
            started = time.perf_counter()
            result = run_tool(by_name, tool, arguments, context)
            if redelivered:
                result.attempts = 2
            observe.tool_executed(tool, result, time.perf_counter() - started)
            return result.model_dump(mode="json")

    return call  # type: ignore[no-any-return]


def _revocations(common: CommonSettings) -> Callable[[str], bool]:
    """Whether a task was revoked, asked of the state Redis (the client is made on first use, in the pool process)."""

    @functools.lru_cache(maxsize=1)
    def client() -> redis.Redis:
        return redis_clients.sync_client("state", common, socket_timeout=2)

    def revoked(task_id: str) -> bool:
        try:
            with observe.untraced():  # one EXISTS per task: bookkeeping, not a span of its own
                return revocations.is_revoked(client(), task_id)
        except redis.RedisError:  # cannot tell: run it (at-least-once)
            return False

    return revoked


def run_tool(
    by_name: dict[str, tuple[type[BaseModel], Handler]],
    tool: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
) -> ToolResult:
    entry = by_name.get(tool)
    if entry is None:
        return ToolResult.failure("unknown_tool", f"unknown tool {tool!r}; this service has {sorted(by_name)}")
    model, handler = entry
    try:
        args = model.model_validate(arguments)
    except ValidationError as exc:
        return ToolResult.failure("invalid_argument", describe_validation_error(tool, exc))
    ctx = ToolContext.model_validate(context)
    try:
        return handler(args, ctx)
    except ToolError as exc:
        observe.exception(exc)
        return ToolResult.failure(exc.kind, f"{tool} failed: {exc}")
    except SoftTimeLimitExceeded:
        return ToolResult.failure("timeout", f"{tool} ran past the worker's time limit")
    except Exception as exc:  # a bug in one tool must not take the worker down
        log.exception("tool %s crashed", tool)
        observe.exception(exc)
        return ToolResult.failure("internal", f"{tool} failed with an internal error: {type(exc).__name__}: {exc}")


def register_plugin(app: Celery, plugin: ToolPlugin, common: CommonSettings) -> Task:
    """A plugin's task on `app`, from its handlers: "module:attribute" naming a dict of tool name → handler, or
    a function of the worker's common settings returning that dict (called once, at the worker's start)."""
    module, _, attribute = plugin.handlers.partition(":")
    handlers = getattr(importlib.import_module(module), attribute, None)
    if callable(handlers):
        handlers = handlers(common)
    if not isinstance(handlers, dict) or not all(callable(h) for h in handlers.values()):
        raise TypeError(f"{plugin.handlers} must be a dict of tool name → handler function, or a function of the "
                        "common settings returning one")
    return register_service(app, plugin.service, list(plugin.tools), handlers, common)


def service_task(app: Celery, service: str, common: CommonSettings, plugin: ToolPlugin | None = None) -> Task:
    """`service`'s task registered on `app`: its `tools.<service>.tasks.register(app, common)` (which reads
    its service's own settings), or the plugin's handlers."""
    if plugin is not None:
        return register_plugin(app, plugin, common)
    module = importlib.import_module(f"toolfabric_server.tools.{service}.tasks")
    return module.register(app, common)  # type: ignore[no-any-return]


def run_worker(service: str, concurrency: int | None = None, extra_args: list[str] | None = None,
               plugin: ToolPlugin | None = None) -> None:
    """Start a Celery worker consuming only `service`'s queue (blocks); a plugin's when `plugin` is given.

    The settings are read here, once (the service's own in its `register`); the app is built here, not at import."""
    common, worker, telemetry = CommonSettings(), WorkerSettings(), TelemetrySettings()
    app = make_celery(common, worker)
    service_task(app, service, common, plugin)
    argv = [
        "worker",
        "--queues",
        service,
        "--concurrency",
        str(concurrency or worker.concurrency),
        "--hostname",
        # Unique per process: a restarted worker is a new consumer, so gateways can tell that the old one died.
        f"{service}-{uuid.uuid4().hex[:6]}@%h",
        "--loglevel",
        common.log_level,
        "--without-gossip",
        "--without-mingle",
        *(extra_args or []),
    ]
    setup_worker_telemetry(service, common, telemetry)  # tracing starts in each pool process, after the fork
    # Celery sets up its logging when the worker starts: the filters go on its handlers then.
    for setup_done in (signals.after_setup_logger, signals.after_setup_task_logger):
        setup_done.connect(lambda logger, **_: logs.install(logger=logger), weak=False)
    # A pool process closes its async bridge (loop thread, Redis clients) when it exits.
    signals.worker_process_shutdown.connect(lambda **_: close_bridges(), weak=False)
    app.steps["consumer"].add(heartbeat_step(common, worker))
    unacked.install_restore_retry()
    app.steps["consumer"].add(unacked.RestoreUnstarted)
    app.worker_main(argv)


class Heartbeat(bootsteps.StartStopStep):
    """Beats while the consumer is connected to the broker: in Redis (gateways see which services have a
    live consumer, `toolfabric_server.common.consumers`) and, when configured, in a file for a readiness probe.

    Consumer steps start once the broker connection is up and stop when it is lost, so a stale
    beat means "not consuming".
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}
    # The worker's settings, read at its start: heartbeat_step gives them (Celery makes the step itself).
    common: CommonSettings
    worker: WorkerSettings

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self._registry: consumers.ConsumerRegistry | None = None

    def start(self, parent: Any) -> None:
        queues = [q.name for q in parent.task_consumer.queues] if parent.task_consumer else []
        self._registry = consumers.ConsumerRegistry.from_settings(self.common, self.worker)
        hostname = parent.hostname
        file = self.worker.heartbeat_file
        path = Path(file) if file else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

        def beat() -> None:
            if path is not None:
                path.touch()
            try:
                self._registry.beat(hostname, queues)  # type: ignore[union-attr]
            except Exception as exc:  # Redis away: the consumer step stops with the broker anyway
                log.warning("heartbeat to Redis failed: %s", exc)

        beat()
        self._timer = parent.timer.call_repeatedly(self.worker.heartbeat_interval_s, beat)

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._registry is not None:
            # A clean stop says so at once; a killed worker's beat simply ages out.
            with contextlib.suppress(Exception):
                self._registry.leave(parent.hostname)
            self._registry.close()
            self._registry = None


def heartbeat_step(common: CommonSettings, worker: WorkerSettings) -> type[Heartbeat]:
    """The Heartbeat consumer step with this worker's settings."""
    return type("Heartbeat", (Heartbeat,), {"common": common, "worker": worker})
