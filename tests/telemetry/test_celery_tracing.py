"""Trace context from a publisher through Redis into a prefork Celery worker, and the worker's metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.telemetry_env import child_env
from toolfabric_server.common.telemetry.span_file import SpanRecord
from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until

PROBE = Path(__file__).resolve().parent / "celery_probe.py"


@pytest.fixture
def probe_worker(otlp_receiver: OtlpReceiver, redis_server, tmp_path: Path) -> Iterator[tuple[Child, int]]:
    port = free_port()
    env = child_env(**otlp_receiver.env(), TOOLFABRIC_REDIS_URL=redis_server.url,
                    TOOLFABRIC_TELEMETRY_METRICS_PORT=str(port))
    worker = Child("probe-worker", [sys.executable, str(PROBE), "worker"], tmp_path, env=env)
    try:
        wait_until(lambda: port_open(port), 30, "probe worker", worker.proc, worker.log)
        yield worker, port
    finally:
        worker.stop()


def _publish(otlp_receiver: OtlpReceiver, redis_url: str, *kinds: str) -> dict:
    env = child_env(**otlp_receiver.env(), TOOLFABRIC_REDIS_URL=redis_url)
    done = subprocess.run([sys.executable, str(PROBE), "publish", *kinds], env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _one(spans: list[SpanRecord], **match: str) -> SpanRecord:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name) for s in spans])
    return found[0]


def _complete(trace_id: str):  # type: ignore[no-untyped-def]
    def check(spans: list[SpanRecord]) -> bool:
        names = {s.name for s in spans if s.trace_id == trace_id}
        return "run/telemetry_probe.run" in names and any(n.startswith("execute_tool ") for n in names)
    return check


def test_run_span_in_the_prefork_worker_is_a_child_of_the_publishing_span(
    probe_worker: tuple[Child, int], otlp_receiver: OtlpReceiver, redis_server
) -> None:
    worker, metrics_port = probe_worker
    out = _publish(otlp_receiver, redis_server.url, "ok", "fail")
    (ok_trace, fail_trace), (ok_result, fail_result) = out["trace_ids"], out["results"]
    assert ok_result["pid"] != worker.proc.pid  # ran in a pool process, set up after the fork
    assert "probe failed on purpose" in fail_result["error"]

    spans = otlp_receiver.wait_for(_complete(ok_trace), 20)
    ours = [s for s in spans if s.trace_id == ok_trace]
    tool = _one(ours, name="execute_tool ok")
    run = _one(ours, name="run/telemetry_probe.run")
    assert (tool.service, run.service) == ("probe-publisher", "toolfabric-probe")
    # The publish is an event of the publishing span (a span each was a third of a trajectory's spans).
    (publish,) = [e for e in tool.events if e.name == "apply_async"]
    assert publish.attributes["messaging.destination.name"] == "telemetry-probe"
    assert publish.attributes["celery.task_name"] == "telemetry_probe.run"
    assert run.parent_id == tool.span_id and run.kind == "CONSUMER"
    assert [e.name for e in run.events] == ["cache.hit"]
    assert run.status != "ERROR" and run.attributes["gen_ai.tool.name"] == "probe"
    # The task's own Redis call sits under its run span; Celery's broker write and result write and the
    # worker's revocation check don't appear (the publish event and the run span stand for them).
    redis_spans = [s for s in ours if s.attributes.get("db.system") == "redis"]
    assert [(s.name, s.parent_id) for s in redis_spans] == [("GET", run.span_id)]
    # Nothing of the publisher's result polling leaked into the trace as orphans.
    assert all(s.parent_id for s in ours if s is not tool)

    failed = otlp_receiver.wait_for(_complete(fail_trace), 20)
    failed_run = _one([s for s in failed if s.trace_id == fail_trace], name="run/telemetry_probe.run")
    assert failed_run.status == "ERROR" and "probe failed on purpose" in failed_run.status_message
    assert "exception" in [e.name for e in failed_run.events]

    # One endpoint in the worker's main process serves what its pool process counted.
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("toolfabric_cache_lookups_total", (("result", "hit"), ("tier", "redis")))] == 2
