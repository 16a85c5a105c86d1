"""One Run's events on their way to the client and to the record.

Each event is recorded, then queued for the client. A record write that fails (Redis away, its pool
exhausted) never ends the stream: the record misses that event, and the final `finished` event is written again in
the background until Redis takes it (for up to `record_retry_s`), so the record ends as the client saw it.
A delivery can be detached (the gateway hands the trajectory to another replica): from then on nothing
more goes to the record or the client.
"""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import RedisError

from gateway.recorder import TrajectoryRecorder
from toolfabric.v1 import fabric_pb2 as pb

log = logging.getLogger(__name__)
_settling: set[asyncio.Task[None]] = set()  # background final writes, kept alive until done


class Delivery:
    def __init__(self, recorder: TrajectoryRecorder, trajectory_id: str, retry_s: float,
                 queue: asyncio.Queue[pb.RunEvent | None] | None = None, first_seq: int = 0) -> None:
        self._recorder, self._queue, self._retry_s = recorder, queue, retry_s
        self.trajectory_id = trajectory_id
        self.last_seq = first_seq
        self.finished: pb.TrajectoryFinished | None = None
        self.detached = False

    async def emit(self, event: pb.RunEvent) -> None:
        if self.detached:
            return
        self.last_seq = max(self.last_seq, event.seq)
        if event.HasField("finished"):
            self.finished = event.finished
        try:
            # Recorded before the client sees it: after a gateway loss, Watch from the client's last seq + 1
            # misses nothing.
            await self._recorder.record(event)
        except RedisError as exc:
            log.warning("trajectory %s: event %d not recorded (%s)", self.trajectory_id, event.seq, exc)
            if event.HasField("finished"):
                task = asyncio.create_task(self._settle(event), name=f"settle-{self.trajectory_id}")
                _settling.add(task)
                task.add_done_callback(_settling.discard)
        finally:
            if self._queue is not None:
                self._queue.put_nowait(event)

    async def fail(self, code: str, reason: str) -> None:
        """End a trajectory whose loop stopped without finishing: an error and a FAILED `finished` event."""
        await self.emit(self.event(error=pb.Error(code=code, message=reason, fatal=True)))
        await self.emit(self.event(finished=pb.TrajectoryFinished(status=pb.STATUS_FAILED, reason=reason)))

    def event(self, **fields: object) -> pb.RunEvent:
        now = Timestamp()
        now.GetCurrentTime()
        return pb.RunEvent(trajectory_id=self.trajectory_id, seq=self.last_seq + 1, time=now, **fields)  # type: ignore[arg-type]

    def close(self) -> None:
        """Tell the client's stream there is nothing more."""
        if self._queue is not None:
            self._queue.put_nowait(None)

    async def _settle(self, finished: pb.RunEvent) -> None:
        loop = asyncio.get_running_loop()
        give_up, pause = loop.time() + self._retry_s, 0.5
        while loop.time() < give_up:
            await asyncio.sleep(pause)
            try:
                await self._recorder.record(finished)
                log.info("trajectory %s: final status recorded after Redis came back", self.trajectory_id)
                return
            except RedisError:
                pause = min(pause * 2, 5.0)
        log.error("trajectory %s: final status %s could not be recorded within %gs", self.trajectory_id,
                  pb.Status.Name(finished.finished.status), self._retry_s)
