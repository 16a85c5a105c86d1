"""`toolfabric trace ID`: print one trace as a tree of spans with their timings.

Spans come from Jaeger's query API when one is configured (`--jaeger`, or
TOOLFABRIC_TELEMETRY_JAEGER_QUERY_URL), else from the JSON-lines file the `file` exporter writes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from toolfabric.spans import SpanEvent, SpanRecord


_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{1,32}$")
# Attributes worth a glance in the tree; `--attributes` prints all of them.
_HIGHLIGHTS = (
    "gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.response.time_to_first_chunk", "gen_ai.response.finish_reasons", "gen_ai.tool.call.id",
    "toolfabric.trajectory.id", "error.type",
)


class TraceNotFound(LookupError):
    pass


class TraceUnreachable(OSError):
    pass


def default_traces_file() -> Path:
    """Where the `file` exporter writes, by the same settings the server reads (no server import)."""
    configured = os.environ.get("TOOLFABRIC_TELEMETRY_TRACES_FILE")
    data_dir = os.environ.get("TOOLFABRIC_DATA_DIR", "./.toolfabric")
    return Path(configured) if configured else Path(data_dir) / "traces.jsonl"


def normalize_trace_id(raw: str) -> str:
    """32 lowercase hex digits (Jaeger drops leading zeros; people paste `0x…`)."""
    text = raw.strip()
    if not _HEX.match(text):
        raise ValueError(f"not a trace id: {raw!r} (expected up to 32 hex digits)")
    return text.lower().removeprefix("0x").zfill(32)


def load_from_file(path: str | Path, trace_id: str) -> list[SpanRecord]:
    from toolfabric.spans import read_records

    if not Path(path).exists():
        raise TraceNotFound(f"no span file at {path} (is OTEL_TRACES_EXPORTER=file set for the stack?)")
    spans = list(read_records(path, trace_id))
    if not spans:
        raise TraceNotFound(f"trace {trace_id} is not in {path}")
    return spans


def load_from_jaeger(base_url: str, trace_id: str, timeout_s: float = 10.0) -> list[SpanRecord]:
    # urllib, not httpx: the client CLI carries no HTTP library of its own.
    url = f"{base_url.rstrip('/')}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (the user's Jaeger URL)
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise TraceNotFound(f"trace {trace_id} is not in Jaeger at {base_url}") from None
        raise TraceUnreachable(f"Jaeger at {base_url} answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise TraceUnreachable(f"cannot read Jaeger at {base_url}: {exc}") from None
    data = body.get("data") or []
    spans = [span for trace in data for span in _from_jaeger_trace(trace)]
    if not spans:
        raise TraceNotFound(f"trace {trace_id} is not in Jaeger at {base_url}")
    return spans


def _jaeger_tags(tags: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {t["key"]: t.get("value") for t in tags or ()}


def _from_jaeger_trace(trace: dict[str, Any]) -> Iterable[SpanRecord]:
    from toolfabric.spans import SpanRecord

    services = {pid: p.get("serviceName", "") for pid, p in (trace.get("processes") or {}).items()}
    for span in trace.get("spans") or []:
        tags = _jaeger_tags(span.get("tags"))
        parent = next((r["spanID"] for r in span.get("references") or [] if r.get("refType") == "CHILD_OF"), None)
        status = str(tags.pop("otel.status_code", "ERROR" if tags.get("error") is True else "UNSET")).upper()
        start_ns = int(span["startTime"]) * 1000
        yield SpanRecord(
            trace_id=normalize_trace_id(span["traceID"]),
            span_id=span["spanID"].lower().zfill(16),
            parent_id=parent.lower().zfill(16) if parent else None,
            name=span["operationName"],
            service=services.get(span.get("processID", ""), ""),
            start_ns=start_ns,
            end_ns=start_ns + int(span.get("duration", 0)) * 1000,
            kind=str(tags.pop("span.kind", "internal")).upper(),
            status=status,
            status_message=str(tags.pop("otel.status_description", "")),
            attributes=tags,
            events=[_jaeger_event(log) for log in span.get("logs") or []],
        )


def _jaeger_event(log: dict[str, Any]) -> SpanEvent:
    from toolfabric.spans import SpanEvent

    fields = _jaeger_tags(log.get("fields"))
    return SpanEvent(str(fields.pop("event", "log")), int(log.get("timestamp", 0)) * 1000, fields)


def render(spans: list[SpanRecord], out: TextIO, *, events: bool = False, attributes: bool = False) -> None:
    """The span tree, children in start order, each line with its offset from the trace start and duration."""
    by_id = {s.span_id: s for s in spans}
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        # A span whose parent is missing (not exported yet, or outside the trace) is shown as a root.
        children[span.parent_id if span.parent_id in by_id else None].append(span)
    for kids in children.values():
        kids.sort(key=lambda s: (s.start_ns, s.name))
    t0 = min(s.start_ns for s in spans)
    total = (max(s.end_ns for s in spans) - t0) / 1e9
    services = sorted({s.service for s in spans if s.service})
    out.write(f"trace {spans[0].trace_id} · {len(spans)} spans · {', '.join(services)} · {total:.3f}s\n")
    out.write(f"{'start':>9} {'duration':>9}  span\n")

    def visit(span: SpanRecord, prefix: str, last: bool, depth: int, parent_service: str) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        line = f"{(span.start_ns - t0) / 1e9:8.3f}s {span.duration_s:8.3f}s  {prefix}{branch}{span.name}"
        if span.service != parent_service:
            line += f"  [{span.service}]"
        shown = span.attributes if attributes else {k: span.attributes[k] for k in _HIGHLIGHTS if k in span.attributes}
        if shown:
            line += "  " + " ".join(f"{k}={_short(v)}" for k, v in shown.items())
        if span.status == "ERROR":
            line += f"  ✗ ERROR {span.status_message}".rstrip()
        out.write(line + "\n")
        inner = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        if events:
            for event in span.events:
                detail = " ".join(f"{k}={_short(v)}" for k, v in event.attributes.items())
                out.write(f"{(event.time_ns - t0) / 1e9:8.3f}s {'':9}  {inner}· {event.name} {detail}".rstrip() + "\n")
        kids = children.get(span.span_id, [])
        for i, kid in enumerate(kids):
            visit(kid, inner, i == len(kids) - 1, depth + 1, span.service)

    for root in children[None]:
        visit(root, "", True, 0, "")


def _short(value: Any, limit: int = 60) -> str:
    """One line, cut to `limit`: stack traces and long arguments stay readable in a tree."""
    text = f"{value:.4g}" if isinstance(value, float) else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_id", metavar="ID", help="trace id (32 hex digits, as in the Run stream's first event)")
    parser.add_argument("--jaeger", metavar="URL",
                        help="Jaeger query URL (default: TOOLFABRIC_TELEMETRY_JAEGER_QUERY_URL)")
    parser.add_argument("--file", metavar="PATH",
                        help="span file of the file exporter (default: TOOLFABRIC_TELEMETRY_TRACES_FILE)")
    parser.add_argument("--events", action="store_true", help="also list span events (cache hits, retries, limits)")
    parser.add_argument("--attributes", action="store_true", help="print every attribute, not only the highlights")
    parser.add_argument("--json", action="store_true", help="print the span records as JSON lines instead")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """0 when the trace was printed, 1 when it was not found, 2 for a malformed id."""
    out = out or sys.stdout
    try:
        trace_id = normalize_trace_id(args.trace_id)
    except ValueError as exc:
        print(f"toolfabric trace: {exc}", file=sys.stderr)
        return 2
    jaeger = None if args.file else (args.jaeger or os.environ.get("TOOLFABRIC_TELEMETRY_JAEGER_QUERY_URL"))
    try:
        if jaeger:
            spans = load_from_jaeger(jaeger, trace_id)
        else:
            spans = load_from_file(args.file or default_traces_file(), trace_id)
    except (TraceNotFound, TraceUnreachable) as exc:
        print(f"toolfabric trace: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out.writelines(s.to_json() + "\n" for s in sorted(spans, key=lambda s: s.start_ns))
    else:
        render(spans, out, events=args.events, attributes=args.attributes)
    return 0
