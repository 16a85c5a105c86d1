"""Span events, attributes and metrics recorded by the one-line observe calls, and the orphan sampler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from toolfabric_server.common.telemetry import observe
from toolfabric_server.common.telemetry.setup import FabricSampler


@pytest.fixture
def tracer_and_spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=FabricSampler(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("observe-test"), exporter
    provider.shutdown()


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_cache_lookups_become_events_attributes_and_counts(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    hits, misses = _value("toolfabric_cache_lookups_total", tier="redis", result="hit"), _value(
        "toolfabric_cache_lookups_total", tier="persistent", result="miss")
    with tracer.start_as_current_span("execute_tool text_search"):
        observe.cache_lookup("persistent", hit=False, namespace="search")
        observe.cache_lookup("redis", hit=True, namespace="search")
    (span,) = exporter.get_finished_spans()
    assert [(e.name, e.attributes["toolfabric.cache.tier"]) for e in span.events] == [
        ("cache.miss", "persistent"), ("cache.hit", "redis")]
    assert span.attributes["toolfabric.cache.redis"] == "hit"
    assert span.attributes["toolfabric.cache.persistent"] == "miss"
    assert _value("toolfabric_cache_lookups_total", tier="redis", result="hit") == hits + 1
    assert _value("toolfabric_cache_lookups_total", tier="persistent", result="miss") == misses + 1


def test_retry_rate_limit_provider_and_sandbox_limit_are_visible_on_the_span(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    kills = _value("toolfabric_sandbox_limit_kills_total", limit="memory")
    cost = _value("toolfabric_provider_cost_units_total", provider="serper")
    waits = _value("toolfabric_rate_limit_wait_seconds_count", limiter="serper")
    with tracer.start_as_current_span("run/toolfabric.search.call"):
        observe.rate_limit_wait("serper", 0.25)
        observe.retry("serper", 1, TimeoutError("slow"))
        observe.provider_call("serper", "ok", cost_units=2)
        observe.sandbox_limit("memory", "over 1024 MB")
    (span,) = exporter.get_finished_spans()
    events = {e.name: dict(e.attributes or {}) for e in span.events}
    assert events["rate_limit.wait"]["toolfabric.rate_limit.wait_s"] == 0.25
    assert events["retry"] == {"toolfabric.retry.of": "serper", "toolfabric.retry.attempt": 1,
                               "toolfabric.retry.reason": "slow", "error.type": "TimeoutError"}
    assert events["provider.call"]["toolfabric.provider.cost_units"] == 2
    assert events["sandbox.limit_exceeded"]["toolfabric.sandbox.limit"] == "memory"
    assert span.attributes["toolfabric.sandbox.limit"] == "memory"
    assert _value("toolfabric_sandbox_limit_kills_total", limit="memory") == kills + 1
    assert _value("toolfabric_provider_cost_units_total", provider="serper") == cost + 2
    assert _value("toolfabric_rate_limit_wait_seconds_count", limiter="serper") == waits + 1


def test_failed_sets_error_status_type_and_exception(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    with tracer.start_as_current_span("execute_tool web_visit"):
        observe.failed("unavailable", "web_visit failed: host down", ConnectionError("host down"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "web_visit failed: host down"
    assert span.attributes["error.type"] == "unavailable"
    assert span.events[0].name == "exception"
    assert span.events[0].attributes["exception.type"] == "ConnectionError"


def test_observe_calls_without_a_span_only_count() -> None:
    before = _value("toolfabric_cache_lookups_total", tier="redis", result="miss")
    observe.cache_lookup("redis", hit=False)
    observe.failed("internal", "nothing to mark")
    assert _value("toolfabric_cache_lookups_total", tier="redis", result="miss") == before + 1


def test_orphan_client_spans_are_dropped_but_client_spans_in_a_trace_are_kept(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    with tracer.start_as_current_span("BRPOP", kind=SpanKind.CLIENT):
        pass
    with tracer.start_as_current_span("invoke_agent", kind=SpanKind.INTERNAL):
        with tracer.start_as_current_span("LPUSH", kind=SpanKind.CLIENT):
            pass
    with tracer.start_as_current_span("Run", kind=SpanKind.SERVER):
        pass
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["LPUSH", "Run", "invoke_agent"]


def test_cache_outcome_counts_each_tier_it_went_through(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    before = {(t, r): _value("toolfabric_cache_lookups_total", tier=t, result=r)
              for t in ("hot", "persistent") for r in ("hit", "miss")}
    with tracer.start_as_current_span("run/toolfabric.search.call"):
        observe.cache_outcome("text_search", "hot", persistent_tier=True)
        observe.cache_outcome("text_search", "persistent", persistent_tier=True)
        observe.cache_outcome("text_search", "provider", persistent_tier=True)
        observe.cache_outcome("text_search", "shared", persistent_tier=False)
        observe.cache_outcome("text_search", "off", persistent_tier=True)
    (span,) = exporter.get_finished_spans()
    assert [(e.name, e.attributes["toolfabric.cache.tier"]) for e in span.events] == [
        ("cache.hit", "hot"),
        ("cache.miss", "hot"), ("cache.hit", "persistent"),
        ("cache.miss", "hot"), ("cache.miss", "persistent"),
        ("cache.miss", "hot"),
    ]
    delta = {k: _value("toolfabric_cache_lookups_total", tier=k[0], result=k[1]) - v for k, v in before.items()}
    assert delta == {("hot", "hit"): 1, ("hot", "miss"): 3, ("persistent", "hit"): 1, ("persistent", "miss"): 1}


def test_a_caught_sandbox_error_records_the_exception_and_counts_the_limit(tracer_and_spans) -> None:
    from toolfabric_server.tools.vision.errors import SandboxMemoryExceeded

    tracer, exporter = tracer_and_spans
    kills = _value("toolfabric_sandbox_limit_kills_total", limit="memory")
    with tracer.start_as_current_span("run/toolfabric.vision.call"):
        observe.exception(SandboxMemoryExceeded("the code ran out of memory (limit 64 MB)"))
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["sandbox.limit_exceeded", "exception"]
    assert span.attributes["toolfabric.sandbox.limit"] == "memory"
    assert _value("toolfabric_sandbox_limit_kills_total", limit="memory") == kills + 1


def test_per_host_rate_limit_buckets_share_one_metric_series() -> None:
    before = _value("toolfabric_rate_limit_wait_seconds_count", limiter="fetch:host")
    observe.rate_limit_wait("fetch:host:example.org", 0.1)
    observe.rate_limit_wait("fetch:host:example.com", 0.1)
    assert _value("toolfabric_rate_limit_wait_seconds_count", limiter="fetch:host") == before + 2


def test_tool_executed_counts_the_call_and_fails_the_run_span(tracer_and_spans) -> None:
    from toolfabric_server.common.tools import ToolResult

    tracer, exporter = tracer_and_spans
    before = _value("toolfabric_tool_executions_total", tool="web_visit", outcome="unavailable")
    with tracer.start_as_current_span("run/toolfabric.fetch.call"):
        observe.tool_executed("web_visit", ToolResult.failure("unavailable", "host down"), 0.3)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "unavailable"
    assert _value("toolfabric_tool_executions_total", tool="web_visit", outcome="unavailable") == before + 1
