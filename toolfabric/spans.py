"""Span records as the `file` exporter writes them (one JSON object per line), and their reader.

The record format lives in the SDK because `toolfabric trace` reads it without any server code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Union


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanRecord:
    """One finished span, independent of where it was read from (file, Jaeger, OTLP)."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_id: Optional[str]
    name: str
    service: str
    start_ns: int
    end_ns: int
    kind: str = "INTERNAL"
    status: str = "UNSET"  # UNSET | OK | ERROR
    status_message: str = ""
    attributes: Dict[str, Any] = field(default_factory=dict)
    events: List[SpanEvent] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def to_json(self) -> str:
        # A hand-built dict: dataclasses.asdict deep-copies and was most of the exporter's cost.
        record = dict(self.__dict__)
        record["events"] = [e.__dict__ for e in self.events]
        return json.dumps(record, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SpanRecord:
        events = [SpanEvent(**e) for e in data.get("events", [])]
        return cls(**{**data, "events": events})


def read_records(path: Union[str, os.PathLike[str]], trace_id: str | None = None) -> Iterator[SpanRecord]:
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
