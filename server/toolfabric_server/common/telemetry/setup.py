"""OpenTelemetry tracing for every toolfabric process, configured from the standard OTEL_* variables.

    OTEL_TRACES_EXPORTER        comma list of otlp | console | file | none (default none: tracing off)
    OTEL_EXPORTER_OTLP_PROTOCOL grpc (default, port 4317) | http/protobuf (port 4318); the _TRACES_
                                variant wins; endpoint, headers, timeout: read by the exporters
    OTEL_SERVICE_NAME           overrides the name the process gives itself
    OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_PROPAGATORS, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED
    TOOLFABRIC_TELEMETRY_TRACES_FILE   where `file` appends span records (default <data_dir>/traces.jsonl)

Entry points call `setup_telemetry(name, traces)` once (gateway, CLI) or `setup_worker_telemetry(service, …)`
before starting a Celery worker, which defers the set-up into each pool process after the fork:
exporter threads and gRPC channels do not survive a fork.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, _get_from_env_or_default
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.settings import CommonSettings, TelemetrySettings
from toolfabric_server.common.telemetry.span_file import JsonLinesSpanExporter

log = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "file", "none")


@dataclass
class _State:
    provider: TracerProvider | None
    pid: int
    service_name: str


_state: _State | None = None
_lock = threading.Lock()


class FabricSampler(Sampler):
    """Drops CLIENT spans nobody reads, delegates everything else (to OTEL_TRACES_SAMPLER's choice).

    Dropped: CLIENT spans that would start a trace of their own — Redis commands outside any
    trajectory (broker polling, result reads, heartbeats) would each become a one-span trace and
    bury the trajectories in Jaeger. (Celery's own Redis traffic in a worker is not even offered:
    it runs with instrumentation suppressed, `run_span`.)
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            parent = trace.get_current_span(parent_context)
            if not parent.get_span_context().is_valid:
                return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"FabricSampler{{{self._delegate.get_description()}}}"


def exporter_names() -> list[str]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ConfigurationError(f"OTEL_TRACES_EXPORTER: unknown exporter(s) {unknown}; use {', '.join(EXPORTERS)}")
    return [n for n in names if n != "none"]


def traces_file(common: CommonSettings, telemetry: TelemetrySettings) -> Path:
    """Where OTEL_TRACES_EXPORTER=file writes: TOOLFABRIC_TELEMETRY_TRACES_FILE, else <data_dir>/traces.jsonl."""
    return Path(telemetry.traces_file) if telemetry.traces_file else Path(common.data_dir) / "traces.jsonl"


def _otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ConfigurationError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use grpc or http/protobuf")


def _exporter(name: str, traces: Path) -> SpanExporter:
    if name == "otlp":
        return _otlp_exporter()
    if name == "console":
        return ConsoleSpanExporter()
    return JsonLinesSpanExporter(traces)


def setup_telemetry(service_name: str, traces: Path, *, instrument: bool = True, trace_redis: bool = True) -> bool:
    """Install the tracer provider for this process; returns whether tracing is on. `traces`: the file of the
    `file` exporter (`traces_file(common, telemetry)`).

    Idempotent: later calls (another entry point, a second worker_process_init) change nothing.
    `instrument` also traces the httpx clients and, with `trace_redis`, every redis-py command.
    """
    global _state
    with _lock:
        if _state is not None:
            if _state.pid != os.getpid() and _state.provider is not None:
                log.warning("telemetry was set up before a fork; spans of pid %d may be lost", os.getpid())
            return _state.provider is not None
        names = [] if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" else exporter_names()
        if not names:
            _state = _State(None, os.getpid(), service_name)
            return False
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        provider = TracerProvider(
            resource=Resource.create({"service.name": name}),
            sampler=FabricSampler(_get_from_env_or_default()),
        )
        for exporter_name in names:
            provider.add_span_processor(BatchSpanProcessor(_exporter(exporter_name, traces)))
        trace.set_tracer_provider(provider)
        _state = _State(provider, os.getpid(), name)
        atexit.register(shutdown_telemetry)
    if instrument:
        instrument_clients(redis=trace_redis)
    return True


def instrument_clients(redis: bool = True) -> None:
    """Spans for redis-py and httpx calls and for Celery tasks published by name (all idempotent)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    from toolfabric_server.common.telemetry.celery import trace_publishing

    if redis:
        RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    trace_publishing()


def tracing_on() -> bool:
    """Whether this process was set up with an exporter (spans are made and exported)."""
    return _state is not None and _state.provider is not None


def shutdown_telemetry() -> None:
    """Flush and stop the exporters; tracing stays off in this process afterwards."""
    if _state is None or _state.provider is None or _state.pid != os.getpid():
        return
    _state.provider.shutdown()


def current_trace_id() -> str:
    """Hex id of the active trace ('' when tracing is off): what the Run stream's first event carries."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


def context_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> contextvars.Context:
    """A copy of the current context continuing the caller's trace (W3C headers in gRPC metadata), if any.

    Hand it to `asyncio.create_task(..., context=…)` so the task's spans join the client's trace.
    """
    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    ctx = contextvars.copy_context()
    if carrier:
        ctx.run(otel_context.attach, propagate.extract(carrier))
    return ctx


def setup_worker_telemetry(service: str, common: CommonSettings, telemetry: TelemetrySettings) -> None:
    """Call in a worker's main process before `worker_main`: tracing starts in each pool process."""
    from toolfabric_server.common.telemetry import celery as celery_tracing
    from toolfabric_server.common.telemetry import metrics

    traces = traces_file(common, telemetry)
    celery_tracing.trace_worker(f"toolfabric-{service}", lambda name: setup_telemetry(name, traces),
                                shutdown_telemetry)
    if telemetry.metrics_port:
        metrics.serve_worker_metrics(telemetry.metrics_port, telemetry.metrics_host)
