"""A trajectory's events as the engine emits them: each stamped with the trajectory id, the step, the next
sequence number and the time, then handed to the door's `Emit` (which records and delivers it)."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.engine.ports import Emit


class EventSink:
    def __init__(self, trajectory_id: str, emit: Emit, seq: int = 0) -> None:
        self.trajectory_id, self.step, self._seq, self._emit = trajectory_id, 0, seq, emit

    @property
    def seq(self) -> int:
        """The last sequence number emitted (a resumed or stepped trajectory's sink starts from its record's)."""
        return self._seq

    async def __call__(self, **event: Any) -> None:
        self._seq += 1
        out = pb.RunEvent(trajectory_id=self.trajectory_id, step=self.step, seq=self._seq, **event)
        stamp(out)
        await self._emit(out)


def stamp(event: pb.RunEvent) -> None:
    """The event's time, now (set in place: a Timestamp built and copied in was half an event's cost)."""
    event.time.seconds, event.time.nanos = divmod(time.time_ns(), 1_000_000_000)


def timestamp(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(round(seconds * 1e9))
    return out
