"""The worker's run span: one per tool call, a child of the sender's `execute_tool` span.

The gateway injects the W3C trace context into each task's message headers (`celery.trace_publishing`); a worker
opens one CONSUMER span `run/<task name>` from that context around the call, with the tool's attributes, and
marks it failed when the body raises. It replaces opentelemetry-instrumentation-celery, whose prerun/postrun
handlers (a span per task, the whole Celery request copied into attributes) were two thirds of tracing's cost in a
worker (issue 24). `run_span` takes the carrier, not the task, so a message carrying several calls can give each
call its own context and its own span.

Outside a run span a pool process traces nothing: `trace_worker` makes "instrumentation suppressed" its base
context, so Celery's own Redis traffic (the STARTED record, the result write, the revocation check) skips the
Redis instrumentation's wrapper at its first line; `run_span` starts from an empty context, so the tool's own
Redis and HTTP calls inside it are spans again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from toolfabric_server.common.telemetry import setup

tracer = trace.get_tracer("toolfabric.worker")
# What a pool process runs in outside run spans (see the module's docstring).
UNTRACED = otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, Context())


def task_carrier(request: Any) -> dict[str, str]:
    """The trace context fields of a Celery task's request (its message headers become its attributes)."""
    fields = propagate.get_global_textmap().fields
    return {name: value for name in fields if isinstance(value := getattr(request, name, None), str)}


@contextlib.contextmanager
def run_span(task: str, carrier: Mapping[str, str] | None, attributes: Mapping[str, str | int | bool]
             ) -> Iterator[Span]:
    """A `run/<task>` span, current inside the block, continuing the trace `carrier` holds (none: a new trace).

    `attributes`: the call's (`gen_ai.tool.name`, `gen_ai.tool.call.id`, `messaging.message.id`, …). An exception
    out of the block marks the span failed with the exception; a failed result is marked by the caller
    (`observe.failed`). With tracing off it yields a span that records nothing, at the cost of one check.
    """
    if not setup.tracing_on():
        yield INVALID_SPAN
        return
    parent = propagate.extract(carrier or {}, context=Context())  # empty, not the untraced base
    span = tracer.start_span(f"run/{task}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        otel_context.detach(token)
        span.end()
