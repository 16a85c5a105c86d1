"""Trace context through Celery: the run span in the worker is a child of the sender's span (execute_tool).

Senders call `trace_publishing()`: the publish is an `apply_async` event of the current span (a span per publish
was a third of a trajectory's spans, issue 24) and the context goes into the message headers; the broker write
itself is Celery's own traffic, made with instrumentation suppressed. Workers call `trace_worker`: each pool
process sets tracing up after the fork and then runs untraced outside the run spans its tasks open
(`run_span`), so Celery's own Redis traffic there is not traced either. (opentelemetry-instrumentation-celery is
not used: its publish side opens a span it never closes for a task sent by name, as the gateway sends them, and
its run side was two thirds of what tracing cost a worker, docs/performance.md.)
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from celery import signals
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.propagate import inject

from toolfabric_server.common.telemetry.run_span import UNTRACED

log = logging.getLogger(__name__)

# task id -> the context token to detach after the publish (instrumentation suppressed for the broker write)
_pending: OrderedDict[str, contextvars.Token[otel_context.Context]] = OrderedDict()
_pending_lock = threading.Lock()
# A publish that raises never sends after_task_publish; bound what such failures can leave behind.
_MAX_PENDING = 10_000
_publishing_on = False


def _publish_event(task_name: str, queue: str, task_id: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("apply_async", {"celery.task_name": task_name, "messaging.system": "celery",
                                       "messaging.operation.type": "send", "messaging.destination.name": queue,
                                       "messaging.message.id": task_id})


def _before_publish(sender: str | None = None, headers: dict[str, Any] | None = None,
                    routing_key: str | None = None, **_: Any) -> None:
    if sender is None or headers is None:
        return
    task_id = headers.get("id")
    if not task_id:
        return
    # The publish is an event of the caller's span (execute_tool), not a span of its own: one span per tool call
    # on this side, the worker's run span its child. The broker write is Celery's own traffic: not traced.
    _publish_event(sender, routing_key or "", task_id)
    inject(headers)
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    with _pending_lock:
        _pending[task_id] = token
        while len(_pending) > _MAX_PENDING:
            _pending.popitem(last=False)


def _after_publish(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    task_id = (headers or {}).get("id")
    with _pending_lock:
        token = _pending.pop(task_id, None) if task_id else None
    if token is not None:
        otel_context.detach(token)


def trace_publishing() -> None:
    """Publish events + context injection for every task this process sends (idempotent)."""
    global _publishing_on
    if _publishing_on:
        return
    signals.before_task_publish.connect(_before_publish, weak=False)
    signals.after_task_publish.connect(_after_publish, weak=False)
    _publishing_on = True


def publish_carrier(task_name: str, queue: str, task_id: str) -> dict[str, str]:
    """For a call sent inside a batch message (common/batches.py), in the caller's context: its publish event and
    its trace context, which the message carries per call (the worker's `run_span` continues it)."""
    _publish_event(task_name, queue, task_id)
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def trace_worker(service_name: str, setup: Callable[[str], bool], shutdown: Callable[[], None]) -> None:
    """Run `setup` in every pool process after the fork (prefork and solo pools); the process then runs untraced
    but for the run spans its tasks open (`run_span`)."""

    def init(**_: Any) -> None:
        if setup(service_name):
            otel_context.attach(UNTRACED)  # for the process's life: never detached

    def stop(**_: Any) -> None:
        shutdown()  # flushes the last spans before the pool process exits

    signals.worker_process_init.connect(init, weak=False)
    signals.worker_process_shutdown.connect(stop, weak=False)
