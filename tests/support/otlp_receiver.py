"""A real OTLP trace receiver for tests: the collector's TraceService over gRPC on a free loopback
port (and OTLP/HTTP's POST /v1/traces on another), decoding the same protobuf messages a collector does.

Processes under test export to it with `env()` (or `env("http/protobuf")`); the test reads what
arrived as `SpanRecord`s, the same records `toolfabric trace` renders.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from toolfabric.spans import SpanEvent, SpanRecord

_KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "INTERNAL", Span.SPAN_KIND_INTERNAL: "INTERNAL", Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT", Span.SPAN_KIND_PRODUCER: "PRODUCER", Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return getattr(v, which) if which else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _record(span: Span, service: str) -> SpanRecord:
    return SpanRecord(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() or None,
        name=span.name,
        service=service,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        kind=_KINDS.get(span.kind, "INTERNAL"),
        status=_STATUS.get(span.status.code, "UNSET"),
        status_message=span.status.message,
        attributes=_attributes(span.attributes),
        events=[SpanEvent(e.name, e.time_unix_nano, _attributes(e.attributes)) for e in span.events],
    )


def _records(request: trace_service_pb2.ExportTraceServiceRequest) -> list[SpanRecord]:
    records: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            records.extend(_record(s, service) for s in scope_spans.spans)
    return records


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self._sink = sink

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext,
               ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink._add(_records(request))
        return trace_service_pb2.ExportTraceServiceResponse()


def _http_handler(sink: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            sink._add(_records(trace_service_pb2.ExportTraceServiceRequest.FromString(body)))
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class OtlpReceiver:
    """`with OtlpReceiver() as rx:` … `rx.wait_for(lambda spans: …)`."""

    def __init__(self) -> None:
        self._spans: list[SpanRecord] = []
        self._cond = threading.Condition()
        self.requests = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self))
        self.http_port = int(self._http.server_address[1])
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, protocol: str = "grpc") -> dict[str, str]:
        """Environment for a process that should export its spans here, promptly."""
        port = self.port if protocol == "grpc" else self.http_port
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def start(self) -> OtlpReceiver:
        self._server.start()
        self._http_thread.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add(self, records: list[SpanRecord]) -> None:
        with self._cond:
            self.requests += 1
            self._spans.extend(records)
            self._cond.notify_all()

    def spans(self, trace_id: str | None = None) -> list[SpanRecord]:
        with self._cond:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()

    def wait_for(self, check: Callable[[list[SpanRecord]], bool], timeout_s: float = 10.0) -> list[SpanRecord]:
        """All spans received, once `check(spans)` holds; TimeoutError listing what did arrive otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not check(list(self._spans)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = sorted({f"{s.service}:{s.name}" for s in self._spans})
                    raise TimeoutError(f"spans received so far do not satisfy the check: {names}")
                self._cond.wait(remaining)
            return list(self._spans)
