"""Building ListTrajectories requests from friendly filters (shared by both clients)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, Optional, Sequence, Union

from google.protobuf.timestamp_pb2 import Timestamp

from toolfabric.requests import MODES
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import STATUSES

TimeLike = Union[datetime, float, int]


def parse_labels(pairs: Sequence[str]) -> Dict[str, str]:
    """`KEY=VALUE` strings (the CLIs' repeatable --label) as a dict; ValueError names a malformed one."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--label wants KEY=VALUE, not {pair!r}")
        out[key] = value
    return out


def _timestamp(value: TimeLike) -> Timestamp:
    """A datetime (naive = UTC) or epoch seconds."""
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()  # noqa: UP017 (3.9)
    out = Timestamp()
    out.FromNanoseconds(round(float(value) * 1e9))
    return out


def status_value(name: str) -> int:
    """"completed", "COMPLETED" or "STATUS_COMPLETED" → the enum value."""
    if name.upper() in pb.Status.keys():
        return pb.Status.Value(name.upper())
    try:
        return STATUSES[name.lower()]
    except KeyError:
        raise ValueError(f"status must be one of {list(STATUSES)}, not {name!r}") from None


def list_request(*, status: Sequence[str] = (), model: str = "", mode: Optional[str] = None,
                 labels: Optional[Dict[str, str]] = None, eval_run: str = "", since: Optional[TimeLike] = None,
                 until: Optional[TimeLike] = None, question: str = "", page_size: int = 0,
                 page_token: str = "") -> pb.ListTrajectoriesRequest:
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
    request = pb.ListTrajectoriesRequest(
        statuses=[status_value(s) for s in status],  # type: ignore[misc]
        model=model, mode=MODES[mode] if mode else pb.MODE_UNSPECIFIED,
        labels=labels or {}, eval_run=eval_run, question_contains=question, page_size=page_size,
        page_token=page_token)
    if since is not None:
        request.created_after.CopyFrom(_timestamp(since))
    if until is not None:
        request.created_before.CopyFrom(_timestamp(until))
    return request
