"""Registers a service's tools as its one Celery task and runs its worker process.

Every failure inside a tool becomes a `ToolResult` with `ok=False`: a bad call never raises
out of the task, so a worker never dies of one and the loop always gets an observation.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import Celery, Task, bootsteps, signals, states
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError

from toolfabric_server.common import consumers, logs, redis_clients, revocations, unacked
from toolfabric_server.common.batches import BatchedCall, batch_task_name
from toolfabric_server.common.bridge import close_all as close_bridges
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.errors import ToolError
from toolfabric_server.common.reply_lists import REPLY_HEADER
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
# A batch's calls are checked for revocation when it starts, and again before a call that waited longer than this.
_RECHECK_REVOKED_S = 0.05
# The result of a batched call this quick waits up to _PUSH_DELAY_S to be pushed with the next ones (one round trip
# and one wake-up of the sender for many); a slower call's goes at once.
_QUICK_CALL_S, _PUSH_DELAY_S = 0.0005, 0.002

Handler = Callable[[Any, ToolContext], ToolResult]


def _ping(args: PingArgs, ctx: ToolContext) -> ToolResult:
    return ToolResult(text=args.payload or "pong")


def register_service(app: Celery, service: str, specs: list[ToolSpec], handlers: dict[str, Handler],
                     common: CommonSettings) -> Task:
    """Create `toolfabric.<service>.call` on `app`, dispatching by tool name to `handlers`."""
    revoked_among = _revocations(common)
    by_name: dict[str, tuple[type[BaseModel], Handler]] = {"ping": (PingArgs, _ping)}
    for spec in specs:
        if spec.name not in handlers:
            raise ValueError(f"tool {spec.name} of {service} has no handler")
        for name in (spec.name, *spec.aliases):
            by_name[name] = (spec.arguments, handlers[spec.name])

    def execute(tool: str, arguments: dict[str, Any], context: dict[str, Any], redelivered: bool) -> ToolResult:
        started = time.perf_counter()
        result = run_tool(by_name, tool, arguments, context)
        if redelivered:  # the broker delivered it again (its pool process died mid-call): it has run before
            result.attempts = 2
        observe.tool_executed(tool, result, time.perf_counter() - started)
        return result

    def traced(task_id: str, tool: str, context: dict[str, Any], carrier: dict[str, str] | None,
               redelivered: bool) -> contextlib.AbstractContextManager[Any]:
        # One run span per call, a child of the sender's execute_tool span (its context in the message: in the
        # task's headers, or per call in a batch), so a batched call looks like a plain one in the trace.
        return run_span(task_name(service), carrier, {
            "gen_ai.tool.name": tool, "gen_ai.tool.call.id": str(context.get("call_id", "")),
            "messaging.message.id": task_id, "toolfabric.redelivered": redelivered})

    def cancelled(tool: str) -> ToolResult:  # abandoned while queued: nobody waits for it
        result = ToolResult.failure("cancelled", f"{tool} was revoked before it ran")
        observe.failed("cancelled", result.text)
        return result

    def start(task: Any, task_ids: list[str]) -> dict[str, str]:
        # STARTED (it names the worker: the gateway sends a task again when that worker dies) with the revocation
        # check and the guard against running a finished call again, in one round trip (not Celery's
        # track_started, a GET and a SET after the message's own round trips). Bookkeeping: not a span.
        with observe.untraced():
            return task.backend.start_calls(task_ids, {"pid": os.getpid(), "hostname": task.request.hostname},  # type: ignore[no-any-return]
                                            [revocations.key(task_id) for task_id in task_ids])

    def push(task: Any, metas: list[dict[str, Any]], reply_to: str | None) -> None:
        with observe.untraced():  # Celery's result write, as a plain task's (summed up by the run span)
            task.backend.store_metas(metas, reply_to)

    @app.task(name=task_name(service), bind=True, track_started=False)
    def call(self: Any, tool: str, arguments: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        request = self.request
        redelivered = bool((request.delivery_info or {}).get("redelivered"))
        with traced(request.id or "", tool, context, task_carrier(request), redelivered):
            state = start(self, [request.id])[request.id] if request.id else "started"
            if state == "revoked":
                return cancelled(tool).model_dump(mode="json")
            if state == "finished":  # delivered again after it finished: its result stays as it was stored
                return ToolResult.failure("internal", f"{tool} ran already").model_dump(mode="json")
            return execute(tool, arguments, context, redelivered).model_dump(mode="json")

    # Several calls in one message (common/batches.py): no result of its own, no STARTED of its own (each call has
    # both); each call's result is stored and pushed onto the sender's list as soon as it is done.
    @app.task(name=batch_task_name(service), bind=True, track_started=False, ignore_result=True)
    def batch(self: Any, calls: list[BatchedCall]) -> None:
        reply_to = getattr(self.request, REPLY_HEADER, None)
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        states_at_start = start(self, [c["id"] for c in calls])
        revoked_ids = {task_id for task_id, state in states_at_start.items() if state == "revoked"}
        checked = time.monotonic()
        pusher = _Pusher(lambda metas: push(self, metas, reply_to))
        try:
            for call in calls:
                call_id = call["id"]
                if states_at_start[call_id] == "finished":
                    continue  # done before this batch was delivered again: its result is stored already
                if time.monotonic() - checked > _RECHECK_REVOKED_S:  # the calls before it took a while
                    revoked_ids, checked = revoked_among([call_id]), time.monotonic()
                started = time.monotonic()
                try:
                    with traced(call_id, call["tool"], call["context"], call.get("trace"), redelivered):
                        if call_id in revoked_ids:
                            result = cancelled(call["tool"])
                        else:
                            result = execute(call["tool"], call["arguments"], call["context"], redelivered)
                except Exception as exc:  # run_tool catches the tool's own failures: one call must not sink the rest
                    log.exception("call %s of a batch failed", call_id)
                    result = ToolResult.failure("internal", f"{call['tool']} failed in the worker: {exc}")
                meta = self.backend._get_result_meta(result=result.model_dump(mode="json"), state=states.SUCCESS,
                                                     traceback=None, request=None)
                meta["task_id"] = call_id
                pusher.add(meta, quick=time.monotonic() - started <= _QUICK_CALL_S)
        finally:
            pusher.flush()

    return call  # type: ignore[no-any-return]


class _Pusher:
    """A batch's results, pushed onto the sender's list together: a quick call's at most _PUSH_DELAY_S after it is
    done (a timer thread, so a slow call after it does not hold it back), a slow call's at once with those waiting."""

    def __init__(self, push: Callable[[list[dict[str, Any]]], None]) -> None:
        self._push = push
        self._lock = threading.Lock()
        self._waiting: list[dict[str, Any]] = []
        self._timer: threading.Timer | None = None

    def add(self, meta: dict[str, Any], quick: bool) -> None:
        with self._lock:
            self._waiting.append(meta)
            if quick and self._timer is None:
                self._timer = threading.Timer(_PUSH_DELAY_S, self._flush_in_timer)
                self._timer.daemon = True
                self._timer.start()
        if not quick:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            waiting, self._waiting = self._waiting, []
            if not waiting:
                return
            try:  # under the lock: each result is pushed once, in order
                self._push(waiting)
            except Exception:
                self._waiting[:0] = waiting  # the batch's own last flush tries again
                raise

    def _flush_in_timer(self) -> None:
        try:
            self.flush()
        except Exception:  # Redis away past the backend's retries
            log.exception("pushing batched results failed")


def _revocations(common: CommonSettings) -> Callable[[list[str]], set[str]]:
    """Which of several tasks were revoked, asked of the state Redis (the client is made on first use, in the pool
    process). Redis away: cannot tell, so they run (at-least-once)."""

    @functools.lru_cache(maxsize=1)
    def client() -> redis.Redis:
        return redis_clients.sync_client("state", common, socket_timeout=2)

    def revoked_among(task_ids: list[str]) -> set[str]:
        try:
            with observe.untraced():  # bookkeeping, not a span of its own
                return revocations.revoked_among(client(), task_ids)
        except redis.RedisError:
            return set()

    return revoked_among


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
