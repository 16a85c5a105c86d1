"""Finished spans as JSON lines: the `file` exporter of the embedded default (`toolfabric.spans` reads them).

One span per line, in a flat record (`SpanRecord`) that `toolfabric trace` renders. Every process
of the stack (gateway, each worker and its prefork children) appends to the same file: each export
is one `write` on an O_APPEND descriptor, so lines from different processes never interleave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from toolfabric.spans import SpanEvent, SpanRecord


def record_from_span(span: ReadableSpan) -> SpanRecord:
    ctx = span.get_span_context()
    if ctx is None:
        raise ValueError("span without a context")
    resource = span.resource.attributes if span.resource else {}
    return SpanRecord(
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
        payload = "".join(record_from_span(s).to_json() + "\n" for s in spans).encode()
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
