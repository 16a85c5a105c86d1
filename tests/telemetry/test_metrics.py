"""The metric helpers, the /metrics endpoint scraped over HTTP, and queue depth read from a real Redis."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from toolfabric_server.common.telemetry import metrics
from toolfabric_server.devstack.processes import free_port


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_trajectory_step_and_tool_call_helpers_count_by_label() -> None:
    started = _value("toolfabric_trajectories_started_total", mode="general")
    answered = _value("toolfabric_trajectories_finished_total", mode="general", outcome="answered")
    steps = _value("toolfabric_steps_total", mode="general")
    timeouts = _value("toolfabric_tool_calls_total", tool="web_visit", outcome="timeout")
    metrics.trajectory_started("general")
    metrics.step("general")
    metrics.step("general")
    metrics.tool_call("web_visit", "timeout", 2.0)
    metrics.trajectory_finished("general", "answered")
    assert _value("toolfabric_trajectories_started_total", mode="general") == started + 1
    assert _value("toolfabric_trajectories_finished_total", mode="general", outcome="answered") == answered + 1
    assert _value("toolfabric_steps_total", mode="general") == steps + 2
    assert _value("toolfabric_tool_calls_total", tool="web_visit", outcome="timeout") == timeouts + 1
    assert _value("toolfabric_tool_call_duration_seconds_bucket", tool="web_visit", le="2.5") >= 1


def test_model_step_records_ttft_tokens_and_decode_rate() -> None:
    count = _value("toolfabric_model_output_tokens_per_second_count", model="m-rate")
    metrics.model_step("m-rate", ttft_s=0.2, input_tokens=100, output_tokens=41, decode_s=2.0)  # 20 tokens/s
    metrics.model_step("m-rate", ttft_s=None, input_tokens=5, output_tokens=1, decode_s=0.0)  # no rate from 1 token
    assert _value("toolfabric_model_tokens_total", model="m-rate", type="input") == 105
    assert _value("toolfabric_model_tokens_total", model="m-rate", type="output") == 42
    assert _value("toolfabric_model_time_to_first_token_seconds_count", model="m-rate") == 1
    assert _value("toolfabric_model_output_tokens_per_second_count", model="m-rate") == count + 1
    assert _value("toolfabric_model_output_tokens_per_second_sum", model="m-rate") == pytest.approx(20.0)


def test_active_stream_gauge_goes_back_down_even_on_error() -> None:
    base = _value("toolfabric_active_streams")
    with metrics.active_stream():
        assert _value("toolfabric_active_streams") == base + 1
        with pytest.raises(RuntimeError), metrics.active_stream():
            assert _value("toolfabric_active_streams") == base + 2
            raise RuntimeError
    assert _value("toolfabric_active_streams") == base


def test_endpoint_serves_counters_and_queue_depth_per_queue(redis_server, redis_client) -> None:
    redis_client.rpush("vision", "a", "b", "c")
    redis_client.rpush("fetch\x06\x166", "priority-6 message")
    metrics.tool_execution("code", "ok", 0.04)
    server = metrics.start_metrics_server(0, collectors=[
        metrics.QueueDepthCollector(redis_server.url, ["vision", "search", "fetch"])])
    try:
        samples = _scrape(server.port)
    finally:
        server.close()
    assert samples[("toolfabric_queue_depth", (("queue", "vision"),))] == 3
    assert samples[("toolfabric_queue_depth", (("queue", "search"),))] == 0
    assert samples[("toolfabric_queue_depth", (("queue", "fetch"),))] == 1
    assert samples[("toolfabric_tool_executions_total", (("outcome", "ok"), ("tool", "code")))] >= 1


def test_queue_depth_is_absent_rather_than_zero_when_redis_is_down() -> None:
    metrics.step("deep_research")
    server = metrics.start_metrics_server(0, collectors=[
        metrics.QueueDepthCollector(f"redis://127.0.0.1:{free_port()}/0", ["vision"])])
    try:
        samples = _scrape(server.port)
    finally:
        server.close()
    assert not any(name == "toolfabric_queue_depth" for name, _ in samples)
    assert samples[("toolfabric_steps_total", (("mode", "deep_research"),))] >= 1  # the rest is still served
