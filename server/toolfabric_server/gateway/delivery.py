"""One Run's events on their way to the client and to the record.

Each event is recorded, then queued for the client. A record write that fails (Redis away, its pool
exhausted) never ends the stream: the record misses that event, and the final `finished` event is written again in
the background until Redis takes it (for up to `record_retry_s`), so the record ends as the client saw it.
A delivery can be detached (the gateway hands the trajectory to another replica): from then on nothing
more goes to the record or the client.

Events are recorded in batches (one Redis transaction each, `TrajectoryRecorder.record_many`): an event waits up to
`batch_s` for the ones after it (a step's text and its tool calls, a round's observations, the answer and usage
before `finished`), and `finished` takes every event waiting with it at once. The client gets a batch once it is
recorded, so "recorded before the client sees it" holds for each event; an event not yet recorded when the gateway
dies was seen by nobody, and the step it belongs to is incomplete in the record (engine/resume.py runs it again).
"""

from __future__ import annotations

import asyncio
import logging

from opentelemetry import trace
from redis.exceptions import RedisError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.engine.events import stamp
from toolfabric_server.gateway.recorder import TrajectoryRecorder

log = logging.getLogger(__name__)
BATCH_S = 0.005  # how long an event waits for more: a few ms of a trajectory's events are one Redis round trip
_settling: set[asyncio.Task[None]] = set()  # background final writes, kept alive until done


class Delivery:
    def __init__(self, recorder: TrajectoryRecorder, trajectory_id: str, retry_s: float,
                 queue: asyncio.Queue[pb.RunEvent | None] | None = None, first_seq: int = 0,
                 batch_s: float = BATCH_S) -> None:
        self._recorder, self._queue, self._retry_s = recorder, queue, retry_s
        self.trajectory_id = trajectory_id
        self.last_seq = first_seq
        self.finished: pb.TrajectoryFinished | None = None
        self._detached = False
        self._seen_seq = first_seq  # the last event handed to the client (without a client: taken to the record)
        self._batch_s = batch_s
        self._pending: list[pb.RunEvent] = []  # emitted, not yet recorded (in order)
        self._writing = asyncio.Lock()  # one batch at a time, in order
        self._timer: asyncio.TimerHandle | None = None  # the flush of the events waiting

    @property
    def detached(self) -> bool:
        return self._detached

    @detached.setter
    def detached(self, value: bool) -> None:
        """Detaching drops the events not yet taken to the record: nobody saw them, and the sequence (the hint
        `last_seq + 1` the client gets) goes back to the last event that was."""
        if value and not self._detached:
            self._pending.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.last_seq = self._seen_seq
        self._detached = value

    async def emit(self, event: pb.RunEvent) -> None:
        if self.detached:
            return
        self.last_seq = max(self.last_seq, event.seq)
        if event.HasField("finished"):
            self.finished = event.finished
        self._pending.append(event)
        if self.finished is None and self._batch_s > 0:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._batch_s, self._flush_later)
            return
        await self.flush()

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.create_task(self.flush(), name=f"flush-{self.trajectory_id}")
        _settling.add(task)
        task.add_done_callback(_settling.discard)

    async def flush(self) -> None:
        """Record every event emitted so far, then hand them to the client."""
        async with self._writing:
            batch, self._pending = self._pending, []
            if self._timer is not None:  # its events are in this batch
                self._timer.cancel()
                self._timer = None
            if not batch or self.detached:
                return
            if self._queue is None:
                self._seen_seq = batch[-1].seq
            span = trace.get_current_span()
            if span.is_recording():  # the gateway's Redis writes are span events, not spans (telemetry/setup.py)
                span.add_event("trajectory.recorded", {"toolfabric.events": len(batch),
                                                       "toolfabric.seq.first": batch[0].seq,
                                                       "toolfabric.seq.last": batch[-1].seq})
            try:
                # Recorded before the client sees it: after a gateway loss, Watch from the client's last seq + 1
                # misses nothing.
                await self._recorder.record_many(batch)
            except RedisError as exc:
                log.warning("trajectory %s: events %d-%d not recorded (%s)", self.trajectory_id, batch[0].seq,
                            batch[-1].seq, exc)
                for event in batch:
                    if event.HasField("finished"):
                        task = asyncio.create_task(self._settle(event), name=f"settle-{self.trajectory_id}")
                        _settling.add(task)
                        task.add_done_callback(_settling.discard)
            finally:
                if self._queue is not None and not self.detached:  # detached meanwhile: Watch from the hint
                    for event in batch:
                        self._queue.put_nowait(event)
                    self._seen_seq = batch[-1].seq

    async def fail(self, code: str, reason: str) -> None:
        """End a trajectory whose loop stopped without finishing: an error and a FAILED `finished` event."""
        await self.emit(self.event(error=pb.Error(code=code, message=reason, fatal=True)))
        await self.emit(self.event(finished=pb.TrajectoryFinished(status=pb.STATUS_FAILED, reason=reason)))

    def event(self, **fields: object) -> pb.RunEvent:
        out = pb.RunEvent(trajectory_id=self.trajectory_id, seq=self.last_seq + 1, **fields)  # type: ignore[arg-type]
        stamp(out)
        return out

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
