"""One trace per trajectory across every process, and Prometheus counters that match the trajectory.

The session's stack exports spans to a real OTLP receiver (tests/integration/conftest.py); each test
reads the spans of its own trace and scrapes the gateway's and workers' /metrics endpoints.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client.parser import text_string_to_metric_families

from tests.support.otlp_receiver import OtlpReceiver
from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric_server.catalog import catalog
from toolfabric_server.common.telemetry.span_file import SpanRecord
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape_all(stack: EmbeddedStack) -> dict[str, Samples]:
    return {name: scrape(port) for name, port in stack.metrics_ports.items()}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def trace_complete(trace_id: str, runs: int) -> Callable[[list[SpanRecord]], bool]:
    """The root has ended (it ends last in the gateway) and every worker's run span has arrived."""
    def check(spans: list[SpanRecord]) -> bool:
        ours = [s for s in spans if s.trace_id == trace_id]
        return (any(s.name.startswith("invoke_agent") for s in ours)
                and sum(s.name.startswith("run/") for s in ours) >= runs)
    return check


@pytest.fixture(scope="module")
def traced_run(stack: EmbeddedStack, otlp_receiver: OtlpReceiver):  # type: ignore[no-untyped-def]
    """The demo question, with every endpoint scraped before and after it."""
    before = scrape_all(stack)
    with Client(stack.target, timeout_s=180) as client:
        result = client.ask(DEMO_QUESTION, images=[DEMO_IMAGE])
    after = scrape_all(stack)
    assert result.status == "STATUS_COMPLETED", result.reason
    spans = otlp_receiver.wait_for(trace_complete(result.trace_id, len(result.tool_calls)), 30)
    return result, [s for s in spans if s.trace_id == result.trace_id], before, after


def test_trace_id_is_in_the_first_event_and_the_sdk_result(traced_run) -> None:  # type: ignore[no-untyped-def]
    result = traced_run[0]
    assert len(result.trace_id) == 32 and int(result.trace_id, 16) != 0
    assert result.events[0].started.trace_id == result.trace_id


def test_one_trace_holds_root_steps_model_calls_and_every_tool_down_to_the_worker(traced_run) -> None:  # type: ignore[no-untyped-def]
    result, spans, _, _ = traced_run
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_id is None]
    assert [(r.name, r.service) for r in roots] == [("invoke_agent toolfabric", "toolfabric-gateway")]
    root = roots[0]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["toolfabric.trajectory.id"] == result.trajectory_id
    assert root.attributes["toolfabric.mode"] == "deep_research"
    assert root.attributes["toolfabric.budget.max_steps"] > 0
    # Nothing dangles: every span's parent was exported into the same trace.
    assert all(s.parent_id in by_id for s in spans if s is not root)

    steps = sorted((s for s in spans if s.parent_id == root.span_id and s.name.startswith("step ")),
                   key=lambda s: s.start_ns)
    assert len(steps) == result.usage.steps
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert sorted(by_id[c.parent_id].name for c in chats) == sorted(s.name for s in steps)  # one per step
    assert all(c.kind == "CLIENT" and c.attributes["gen_ai.operation.name"] == "chat" for c in chats)
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in chats) == result.usage.output_tokens
    assert all(c.attributes["gen_ai.response.time_to_first_chunk"] > 0 for c in chats)

    # Every tool call: execute_tool under its step (the publish an event of it) → run span in the worker.
    calls = {c.call_id: c.name for c in result.tool_calls}
    tools = {s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name.startswith("execute_tool ")}
    assert {cid: s.name for cid, s in tools.items()} == {cid: f"execute_tool {name}" for cid, name in calls.items()}
    for call_id, tool in tools.items():
        service = catalog().get(calls[call_id]).service  # type: ignore[union-attr]
        assert by_id[tool.parent_id].name.startswith("step ")  # type: ignore[index]
        (publish,) = [e for e in tool.events if e.name == "apply_async"]
        assert publish.attributes["celery.task_name"] == f"toolfabric.{service}.call"
        (run,) = [s for s in spans if s.parent_id == tool.span_id and s.name.startswith("run/")]
        assert (run.name, run.kind, run.service) == (f"run/toolfabric.{service}.call", "CONSUMER",
                                                     f"toolfabric-{service}")
        assert run.attributes["gen_ai.tool.name"] == calls[call_id]
        assert run.attributes["gen_ai.tool.call.id"] == call_id
        assert run.status != "ERROR" and tool.status != "ERROR"

    # Below the run spans: the workers' Redis calls, the fetcher's HTTP requests, cache lookups.
    run_ids = {s.span_id: s for s in spans if s.name.startswith("run/")}
    under_runs = [s for s in spans if _ancestor_in(s, run_ids, by_id)]
    assert any(s.attributes.get("db.system") == "redis" for s in under_runs)
    # Each web_visit either fetched its page (an HTTP span below the run) or had it cached (an event).
    for run in (r for r in run_ids.values() if r.service == "toolfabric-fetch"):
        http = [s for s in under_runs if s.kind == "CLIENT" and {"http.url", "url.full"} & set(s.attributes)
                and _ancestor_in(s, {run.span_id: run}, by_id)]
        assert http or "cache.hit" in [e.name for e in run.events], run.attributes["gen_ai.tool.call.id"]
    search_events = [e.name for s in run_ids.values() if s.service == "toolfabric-search" for e in s.events]
    assert "cache.miss" in search_events or "cache.hit" in search_events


def _ancestor_in(span: SpanRecord, targets: dict[str, SpanRecord], by_id: dict[str, SpanRecord]) -> bool:
    parent = span.parent_id
    while parent is not None:
        if parent in targets:
            return True
        parent = by_id[parent].parent_id if parent in by_id else None
    return False


def test_metrics_endpoints_count_what_the_trajectory_did(traced_run) -> None:  # type: ignore[no-untyped-def]
    result, _, before, after = traced_run
    gateway = (before["gateway"], after["gateway"])
    assert delta(*gateway, "toolfabric_trajectories_started_total", mode="deep_research") == 1
    assert delta(*gateway, "toolfabric_trajectories_finished_total", mode="deep_research", outcome="completed") == 1
    assert delta(*gateway, "toolfabric_steps_total", mode="deep_research") == result.usage.steps
    per_tool = Counter(c.name for c in result.tool_calls)
    for tool, count in per_tool.items():
        assert delta(*gateway, "toolfabric_tool_calls_total", tool=tool, outcome="ok") == count, tool
        assert delta(*gateway, "toolfabric_tool_call_duration_seconds_count", tool=tool) == count, tool
    model = result.events[0].started.model
    assert delta(*gateway, "toolfabric_model_tokens_total", model=model, type="output") == result.usage.output_tokens
    assert delta(*gateway, "toolfabric_model_time_to_first_token_seconds_count", model=model) == result.usage.steps
    assert after["gateway"][("toolfabric_active_streams", frozenset())] == 0
    for queue in ("vision", "search", "fetch"):
        assert after["gateway"][("toolfabric_queue_depth", frozenset({("queue", queue)}))] == 0

    # Each worker's endpoint (served by its main process) counts what its pool processes executed.
    for tool, count in per_tool.items():
        service = catalog().get(tool).service  # type: ignore[union-attr]
        worker = (before[service], after[service])
        assert delta(*worker, "toolfabric_tool_executions_total", tool=tool, outcome="ok") == count, tool
    search = (before["search"], after["search"])
    lookups = sum(delta(*search, "toolfabric_cache_lookups_total", tier="hot", result=r) for r in ("hit", "miss"))
    assert lookups >= per_tool["text_search"] + per_tool["image_search"]


def test_a_failed_tool_call_is_an_error_on_its_spans_with_the_exception(
    stack: EmbeddedStack, otlp_receiver: OtlpReceiver
) -> None:
    script = ['<tool_call>{"name": "code", "arguments": {"code": "1/0"}}</tool_call>', "<answer>done</answer>"]
    with Client(stack.target, timeout_s=120) as client:
        result = client.ask(json.dumps({"script": script}), model="toolfabric_scripted", mode="general")
    assert result.status == "STATUS_COMPLETED"
    spans = [s for s in otlp_receiver.wait_for(trace_complete(result.trace_id, 1), 30)
             if s.trace_id == result.trace_id]
    (tool,) = [s for s in spans if s.name == "execute_tool code"]
    (run,) = [s for s in spans if s.name == "run/toolfabric.vision.call"]
    assert tool.status == run.status == "ERROR"
    assert tool.attributes["error.type"] == run.attributes["error.type"] == "code_error"
    assert "ZeroDivisionError" in run.status_message
    (exception,) = [e for e in run.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "toolfabric_server.tools.vision.errors.CodeRaised"


def test_a_traced_caller_gets_the_trajectory_inside_its_own_trace(
    stack: EmbeddedStack, otlp_receiver: OtlpReceiver
) -> None:
    caller = SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=False,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(caller)), Client(stack.target, timeout_s=120) as client:
        result = client.ask(json.dumps({"script": ["<answer>hi</answer>"]}), model="toolfabric_scripted",
                            mode="general")
    assert result.trace_id == f"{caller.trace_id:032x}"
    spans = otlp_receiver.wait_for(trace_complete(result.trace_id, 0), 30)
    (root,) = [s for s in spans if s.trace_id == result.trace_id and s.name.startswith("invoke_agent")]
    assert root.parent_id == f"{caller.span_id:016x}"
