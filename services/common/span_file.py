"""Finished spans as JSON lines: the `file` exporter of the embedded default, and its reader.

One span per line, in a flat record (`SpanRecord`) that `toolfabric trace` renders. Every process
of the stack (gateway, each worker and its prefork children) appends to the same file: each export
is one `write` on an O_APPEND descriptor, so lines from different processes never interleave.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanRecord:
    """One finished span, independent of where it was read from (file, Jaeger, OTLP)."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    kind: str = "INTERNAL"
    status: str = "UNSET"  # UNSET | OK | ERROR
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def to_json(self) -> str:
        # A hand-built dict: dataclasses.asdict deep-copies and was most of the exporter's cost.
        record = dict(self.__dict__)
        record["events"] = [e.__dict__ for e in self.events]
        return json.dumps(record, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpanRecord:
        events = [SpanEvent(**e) for e in data.get("events", [])]
        return cls(**{**data, "events": events})

    @classmethod
    def from_span(cls, span: ReadableSpan) -> SpanRecord:
        ctx = span.get_span_context()
        if ctx is None:
            raise ValueError("span without a context")
        resource = span.resource.attributes if span.resource else {}
        return cls(
            trace_id=f"{ctx.trace_id:032x}",
            span_id=f"{ctx.span_id:016x}",
            parent_id=f"{span.parent.span_id:016x}" if span.parent else None,
            name=span.name,
            service=str(resource.get("service.name", "")),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            kind=span.kind.name,
            status=span.status.status_code.name,
            status_message=span.status.description or "",
            attributes=_plain(span.attributes),
            events=[SpanEvent(e.name, e.timestamp, _plain(e.attributes)) for e in span.events],
        )


def _plain(attributes: Any) -> dict[str, Any]:
    # Attribute sequences arrive as tuples; JSON wants lists.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


class JsonLinesSpanExporter(SpanExporter):
    """Appends each exported batch to `path`, one JSON span record per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        # Opened lazily and again after a fork, so a prefork child never shares a parent's state.
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        payload = "".join(SpanRecord.from_span(s).to_json() + "\n" for s in spans).encode()
        try:
            with self._lock:
                view = memoryview(payload)
                fd = self._descriptor()
                while view:
                    view = view[os.write(fd, view):]
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written through

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


def read_records(path: str | os.PathLike[str], trace_id: str | None = None) -> Iterator[SpanRecord]:
    """Span records of `path`, only those of `trace_id` when given; unreadable lines are skipped."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            # A cheap substring test first: the file holds every trace the stack ever made.
            if trace_id is not None and trace_id not in line:
                continue
            try:
                record = SpanRecord.from_dict(json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut short by a crash
            if trace_id is None or record.trace_id == trace_id:
                yield record
