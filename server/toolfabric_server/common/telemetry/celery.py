"""Trace context through Celery: the run span in the worker is a child of the sender's span (execute_tool).

Workers use opentelemetry-instrumentation-celery, which extracts the context from the task's
message headers and wraps each run in a CONSUMER span. Its publish side only works for tasks
registered in the sending process; the gateway `send_task`s by name without importing worker code,
and for such a task the instrumentor opens a span it never closes and leaves it attached as the
current context. So senders use `trace_publishing()` here instead, which handles exactly the tasks
this process does not know: the publish is an `apply_async` event of the current span (a span per publish
was a third of a trajectory's spans, issue 24), and the context goes into the message headers.

Celery's own Redis traffic (the broker write, untraced; the result write after a task body, summed
up by the run span: `is_celery_plumbing` lets the sampler drop it) is not traced. The
STARTED record written before the body (the gateway reads it to tell which worker runs a task) is
written with instrumentation suppressed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from celery import signals
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.propagate import extract, inject

log = logging.getLogger(__name__)

# task id -> the context token to detach after the publish (instrumentation suppressed for the broker write)
_pending: OrderedDict[str, contextvars.Token[otel_context.Context]] = OrderedDict()
_pending_lock = threading.Lock()
# A publish that raises never sends after_task_publish; bound what such failures can leave behind.
_MAX_PENDING = 10_000
_publishing_on = False
# Run spans whose task body has returned: what follows under them is Celery storing the result.
_bodies_done: weakref.WeakSet[trace.Span] = weakref.WeakSet()


def task_body_done() -> None:
    """Call at the end of a task body (toolfabric_server.common.worker does, via observe.tool_executed)."""
    span = trace.get_current_span()
    if span.is_recording():
        _bodies_done.add(span)


def is_celery_plumbing(parent: trace.Span) -> bool:
    """Whether a CLIENT call under `parent` is Celery talking to its broker or result backend."""
    if getattr(parent, "kind", None) is trace.SpanKind.PRODUCER:
        return str(getattr(parent, "name", "")).startswith("apply_async/")
    return parent in _bodies_done


def _registered_here(task_name: str) -> bool:
    from celery import current_app

    return task_name in current_app.tasks


def _before_publish(sender: str | None = None, headers: dict[str, Any] | None = None,
                    routing_key: str | None = None, **_: Any) -> None:
    if sender is None or headers is None or _registered_here(sender):
        return  # the instrumentor (workers) handles registered tasks
    task_id = headers.get("id")
    if not task_id:
        return
    # The publish is an event of the caller's span (execute_tool), not a span of its own: one span per tool call
    # on this side, the worker's run span its child. The broker write is Celery's own traffic: not traced.
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("apply_async", {
            "celery.task_name": sender,
            "messaging.system": "celery",
            "messaging.operation.type": "send",
            "messaging.destination.name": routing_key or "",
            "messaging.message.id": task_id,
        })
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
    """Publish events + context injection for `send_task` by name (idempotent)."""
    global _publishing_on
    if _publishing_on:
        return
    signals.before_task_publish.connect(_before_publish, weak=False)
    signals.after_task_publish.connect(_after_publish, weak=False)
    _publishing_on = True


def publish_carrier(task_name: str, queue: str, task_id: str) -> dict[str, str]:
    """For a call sent inside a batch message (common/batches.py), in the caller's context: its publish event and
    its trace context, which the message carries per call."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("apply_async", {"celery.task_name": task_name, "messaging.system": "celery",
                                       "messaging.operation.type": "send", "messaging.destination.name": queue,
                                       "messaging.message.id": task_id})
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextlib.contextmanager
def batched_run_span(task_name: str, task_id: str, carrier: dict[str, str]) -> Iterator[None]:
    """A batched call's run span in the worker: a child of its own sender's span, as a plain task's run span."""
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(f"run/{task_name}", context=extract(carrier), kind=trace.SpanKind.CONSUMER,
                                      attributes={"celery.task_name": task_name, "messaging.message.id": task_id}):
        yield


def _quiet_started_records() -> None:
    """Store STARTED states without Redis spans under the run span (they are Celery's, not the task's)."""
    from celery import current_app, states

    backend = current_app.backend
    store = backend.store_result

    def store_result(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        if state != states.STARTED:
            return store(task_id, result, state, *args, **kwargs)
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return store(task_id, result, state, *args, **kwargs)
        finally:
            otel_context.detach(token)

    backend.store_result = store_result


def trace_worker(service_name: str, setup: Callable[[str], bool], shutdown: Callable[[], None]) -> None:
    """Run `setup` in every pool process after the fork (prefork and solo pools), then instrument Celery."""

    def init(**_: Any) -> None:
        if setup(service_name):
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument()
            _quiet_started_records()

    def stop(**_: Any) -> None:
        shutdown()  # flushes the last spans before the pool process exits

    signals.worker_process_init.connect(init, weak=False)
    signals.worker_process_shutdown.connect(stop, weak=False)
