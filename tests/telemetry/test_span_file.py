"""The JSON-lines span file: what a record holds, and many processes appending at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from toolfabric.spans import read_records
from toolfabric_server.common.telemetry.span_file import JsonLinesSpanExporter


def _provider(path: Path, service: str = "file-test") -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    return provider


def test_records_keep_ids_parent_links_status_attributes_and_events(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    tracer = _provider(path).get_tracer("t")
    with tracer.start_as_current_span("outer", attributes={"gen_ai.operation.name": "invoke_agent"}) as outer:
        try:
            with tracer.start_as_current_span("inner", kind=SpanKind.CLIENT, attributes={"tags": ("a", "b")}) as inner:
                inner.add_event("cache.miss", {"toolfabric.cache.tier": "redis"})
                raise ValueError("boom")
        except ValueError:
            pass
    trace_id = f"{outer.get_span_context().trace_id:032x}"
    records = {r.name: r for r in read_records(path, trace_id)}
    assert set(records) == {"outer", "inner"}
    assert records["outer"].parent_id is None
    assert records["inner"].parent_id == records["outer"].span_id == f"{outer.get_span_context().span_id:016x}"
    assert records["inner"].kind == "CLIENT"
    assert records["inner"].attributes == {"tags": ["a", "b"]}
    assert records["inner"].status == StatusCode.ERROR.name and "boom" in records["inner"].status_message
    # The SDK records the escaping exception as an event, after ours.
    assert [e.name for e in records["inner"].events] == ["cache.miss", "exception"]
    assert records["outer"].service == "file-test"
    assert records["outer"].end_ns >= records["inner"].end_ns >= records["inner"].start_ns > 0


def test_reader_filters_by_trace_and_skips_a_truncated_line(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    tracer = _provider(path).get_tracer("t")
    with tracer.start_as_current_span("one") as one:
        pass
    with tracer.start_as_current_span("two"):
        pass
    with path.open("a") as f:
        f.write('{"trace_id": "cut sh')  # what a crash mid-write leaves
    assert [r.name for r in read_records(path)] == ["one", "two"]
    assert [r.name for r in read_records(path, f"{one.get_span_context().trace_id:032x}")] == ["one"]


_WRITER = """
import sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from toolfabric_server.common.telemetry.span_file import JsonLinesSpanExporter
provider = TracerProvider(resource=Resource.create({"service.name": sys.argv[2]}))
provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(sys.argv[1]), schedule_delay_millis=5))
tracer = provider.get_tracer("w")
for i in range(400):
    with tracer.start_as_current_span(f"span-{i}", attributes={"payload": "x" * 3000}):
        pass
provider.shutdown()
"""


def test_processes_appending_at_once_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"writer-{n}"]) for n in range(3)]
    assert [w.wait(60) for w in writers] == [0, 0, 0]
    lines = path.read_text().splitlines()
    records = list(read_records(path))
    assert len(lines) == len(records) == 1200
    assert {r.service for r in records} == {"writer-0", "writer-1", "writer-2"}
