"""`toolfabric trace ID`: the span tree from the file exporter's output and from Jaeger's query API."""

from __future__ import annotations

import argparse
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from toolfabric.cli import trace as trace_view
from toolfabric.spans import SpanRecord, read_records
from toolfabric_server.common.telemetry.span_file import JsonLinesSpanExporter


def _tracer(path: Path, service: str) -> trace.Tracer:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    return provider.get_tracer("view-test")


@pytest.fixture
def trajectory(tmp_path: Path) -> tuple[Path, str]:
    """A small trajectory's spans in a span file: gateway spans, and a worker span continuing the trace."""
    path = tmp_path / "traces.jsonl"
    gateway, vision = _tracer(path, "toolfabric-gateway"), _tracer(path, "toolfabric-vision")
    root_attributes = {"toolfabric.trajectory.id": "t1"}
    with gateway.start_as_current_span("invoke_agent toolfabric", attributes=root_attributes) as root:
        with gateway.start_as_current_span("step 1"):
            with gateway.start_as_current_span("chat baseline", kind=SpanKind.CLIENT,
                                               attributes={"gen_ai.usage.output_tokens": 12}):
                pass
            with gateway.start_as_current_span("execute_tool code") as tool:
                tool.set_status(Status(StatusCode.ERROR, "code failed: memory"))
                tool.set_attribute("gen_ai.response.time_to_first_chunk", 0.0123456789)
                tool.add_event("exception", {"exception.stacktrace": "Traceback:\n  line 1\nBoom"})
                with vision.start_as_current_span("run/toolfabric.vision.call", kind=SpanKind.CONSUMER,
                                                  context=trace.set_span_in_context(tool)) as run:
                    run.add_event("sandbox.limit_exceeded", {"toolfabric.sandbox.limit": "memory"})
    return path, f"{root.get_span_context().trace_id:032x}"


def _run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    trace_view.add_arguments(parser)
    out = io.StringIO()
    return trace_view.run(parser.parse_args(list(argv)), out), out.getvalue()


def _tree(output: str) -> list[str]:
    """The span column of each line, without the timings."""
    return [line[21:] for line in output.splitlines()[2:]]


def test_prints_the_tree_in_start_order_with_services_errors_and_highlights(trajectory) -> None:
    path, trace_id = trajectory
    code, output = _run(trace_id, "--file", str(path))
    assert code == 0
    header = output.splitlines()[0]
    assert header.startswith(f"trace {trace_id} · 5 spans · toolfabric-gateway, toolfabric-vision · ")
    assert _tree(output) == [
        "invoke_agent toolfabric  [toolfabric-gateway]  toolfabric.trajectory.id=t1",
        "└─ step 1",
        "   ├─ chat baseline  gen_ai.usage.output_tokens=12",
        "   └─ execute_tool code  gen_ai.response.time_to_first_chunk=0.01235  ✗ ERROR code failed: memory",
        "      └─ run/toolfabric.vision.call  [toolfabric-vision]",
    ]
    root_line = output.splitlines()[2]
    assert root_line.split()[0] == "0.000s"


def test_events_are_listed_under_their_span_on_request(trajectory) -> None:
    path, trace_id = trajectory
    _, output = _run(trace_id, "--file", str(path), "--events")
    assert _tree(output)[-3:] == [
        "      · exception exception.stacktrace=Traceback: line 1 Boom",
        "      └─ run/toolfabric.vision.call  [toolfabric-vision]",
        "         · sandbox.limit_exceeded toolfabric.sandbox.limit=memory",
    ]


def test_json_output_and_id_normalisation(trajectory) -> None:
    path, trace_id = trajectory
    code, output = _run("0x" + trace_id.upper(), "--file", str(path), "--json")
    assert code == 0
    names = [json.loads(line)["name"] for line in output.splitlines()]
    assert names[0] == "invoke_agent toolfabric" and len(names) == 5


def test_unknown_trace_missing_file_and_bad_id_fail_with_distinct_codes(trajectory, tmp_path: Path, capsys) -> None:
    path, _ = trajectory
    assert _run("ab" * 16, "--file", str(path))[0] == 1
    assert _run("ab" * 16, "--file", str(tmp_path / "none.jsonl"))[0] == 1
    assert "OTEL_TRACES_EXPORTER=file" in capsys.readouterr().err
    assert _run("not-a-trace-id", "--file", str(path))[0] == 2


def _jaeger_json(records: list[SpanRecord]) -> dict[str, Any]:
    """Jaeger's query API answer for these spans (its JSON model: µs times, tags, references, processes)."""
    processes = {f"p{i}": {"serviceName": name, "tags": []}
                 for i, name in enumerate(sorted({r.service for r in records}))}
    pid = {v["serviceName"]: k for k, v in processes.items()}
    spans = []
    for r in records:
        tags = [{"key": k, "type": "string", "value": v} for k, v in r.attributes.items()]
        tags.append({"key": "span.kind", "type": "string", "value": r.kind.lower()})
        if r.status == "ERROR":
            tags += [{"key": "otel.status_code", "type": "string", "value": "ERROR"},
                     {"key": "otel.status_description", "type": "string", "value": r.status_message},
                     {"key": "error", "type": "bool", "value": True}]
        spans.append({
            "traceID": r.trace_id.lstrip("0"), "spanID": r.span_id, "operationName": r.name,
            "references": [{"refType": "CHILD_OF", "traceID": r.trace_id, "spanID": r.parent_id}]
            if r.parent_id else [],
            "startTime": r.start_ns // 1000, "duration": (r.end_ns - r.start_ns) // 1000, "tags": tags,
            "logs": [{"timestamp": e.time_ns // 1000,
                      "fields": [{"key": "event", "type": "string", "value": e.name}]
                      + [{"key": k, "type": "string", "value": v} for k, v in e.attributes.items()]}
                     for e in r.events],
            "processID": pid[r.service],
        })
    return {"data": [{"traceID": records[0].trace_id, "spans": spans, "processes": processes}], "errors": None}


@pytest.fixture
def jaeger(trajectory) -> Iterator[str]:
    """A local HTTP server answering /api/traces/{id} the way Jaeger's query service does."""
    path, trace_id = trajectory
    body = json.dumps(_jaeger_json(list(read_records(path, trace_id)))).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == f"/api/traces/{trace_id}"
            payload = body if found else b'{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}'
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_jaeger_query_api_gives_the_same_tree_as_the_file(trajectory, jaeger: str) -> None:
    path, trace_id = trajectory
    from_file = _run(trace_id, "--file", str(path), "--events")[1]
    code, from_jaeger = _run(trace_id, "--jaeger", jaeger, "--events")
    assert code == 0
    assert _tree(from_jaeger) == _tree(from_file)
    assert _run("cd" * 16, "--jaeger", jaeger)[0] == 1
