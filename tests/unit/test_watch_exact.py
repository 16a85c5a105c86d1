"""Watch is exact across handovers: a property test over random trajectories and random handover points.

Gateway A streams a trajectory (text deltas on two channels, tool calls, observations) through the real
recorder and Delivery into a real Redis; at a random event it is SIGKILLed (it stops; its client saw any prefix
of what it streamed) or SIGTERMed (it detaches; its client saw everything and got the hint). Gateway B takes
over as the reaper does (adopt the open text, checkpoint, resume from the first incomplete step). The client
Watches from the hint. What it saw plus what Watch gives must be one stream: seq 1, 2, 3, … with no gap and no
duplicate, every event exactly as streamed, and no sequence number used twice by the two gateways.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.checkpoints import checkpoint
from toolfabric_server.gateway.delivery import Delivery

Step = list[tuple[str, int, str]]  # ("text", channel, chunk) | ("call", 0, name)


@dataclass
class Plan:
    steps: list[Step]
    stop_at: int  # gateway A stops after streaming this many events
    seen: int  # … of which its client received this many (SIGKILL), or all of them (SIGTERM)
    signal: str


chunk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
item = st.one_of(st.tuples(st.just("text"), st.sampled_from([pb.CHANNEL_THINK, pb.CHANNEL_ANSWER]), chunk),
                 st.tuples(st.just("call"), st.just(0), st.sampled_from(["crop", "code"])))
steps = st.lists(st.lists(item, min_size=1, max_size=12), min_size=1, max_size=4)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    drawn = draw(steps)
    total = 1 + sum(len(s) + sum(1 for kind, _, _ in s if kind == "call") for s in drawn) + 2
    stop_at = draw(st.integers(1, total - 1))
    return Plan(drawn, stop_at, draw(st.integers(0, stop_at)), draw(st.sampled_from(["SIGKILL", "SIGTERM"])))


class _Stopped(Exception):
    pass


class _Gateway:
    """One gateway's side of a trajectory: events stamped and delivered as gateway/runs.py does; what it streamed
    is what reached its client's queue (Delivery hands events over once they are recorded)."""

    def __init__(self, client: aredis.Redis, tid: str, record: recorder.TrajectoryRecorder,
                 first_seq: int = 0, stop_at: int | None = None) -> None:
        self.client, self.tid, self.stop_at = client, tid, stop_at
        self.queue: asyncio.Queue[pb.RunEvent | None] = asyncio.Queue()
        self.delivery = Delivery(record, tid, 1.0, self.queue, first_seq=first_seq)
        self.emitted = 0
        self._streamed: list[pb.RunEvent] = []

    @property
    def streamed(self) -> list[pb.RunEvent]:
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is not None:
                self._streamed.append(event)
        return self._streamed

    async def emit(self, **fields: object) -> None:
        if self.stop_at is not None and self.emitted >= self.stop_at:
            raise _Stopped
        self.emitted += 1
        await self.delivery.emit(self.delivery.event(**fields))

    async def run_steps(self, plan: list[Step], first: int) -> None:
        for number, step in enumerate(plan[first - 1:], start=first):
            for n, (kind, channel, value) in enumerate(step):
                if kind == "text":
                    await self.emit(step=number, text=pb.TextDelta(channel=channel, text=value))
                else:
                    call_id = f"s{number}c{n}"
                    await self.emit(step=number, tool_call=pb.ToolCall(call_id=call_id, name=value))
                    await self.emit(step=number, observation=pb.Observation(call_id=call_id, name=value, text="ok"))
        await self.emit(step=len(plan), answer=pb.FinalAnswer(text="done"))
        await self.emit(finished=pb.TrajectoryFinished(status=pb.STATUS_COMPLETED, reason="answered"))


async def _scenario(client: aredis.Redis, tid: str, plan: Plan) -> None:
    rec_a = recorder.TrajectoryRecorder(client, tid, 600)
    await rec_a.begin("q", pb.MODE_GENERAL, "m")
    a = _Gateway(client, tid, rec_a, stop_at=plan.stop_at)
    with pytest.raises(_Stopped):
        await a.emit(started=pb.TrajectoryStarted(model="m"))
        await a.run_steps(plan.steps, 1)
    # Gateway A stops: text deltas not yet recorded go nowhere (a write under way ends first).
    a.delivery.detached = True
    await a.delivery.flush()
    if plan.signal == "SIGTERM":  # drained: the client got every event and the hint
        a.delivery.detached = True
        seen, hint = a.streamed, a.delivery.last_seq + 1
    else:  # killed: the client got some prefix of what was streamed
        seen = a.streamed[:plan.seen]
        hint = (seen[-1].seq if seen else 0) + 1

    # Gateway B takes over (gateway/runs.py take_over): the lost gateway's open text, the checkpoint, the rest.
    rec_b = recorder.TrajectoryRecorder(client, tid, 600)
    await rec_b.adopt_open()
    found = await recorder.load(client, tid)
    assert found is not None
    point = checkpoint(found, time.time())
    b = _Gateway(client, tid, rec_b, first_seq=point.last_seq)
    await b.emit(step=point.next_step, resumed=pb.TrajectoryResumed(from_step=point.next_step,
                                                                    from_seq=point.last_seq))
    await b.run_steps(plan.steps, point.next_step)

    watched = [e async for e in _watch(client, tid, hint)]
    stream = seen + watched
    assert [e.seq for e in stream] == list(range(1, len(stream) + 1)), "a gap or a duplicate"
    streamed = {e.seq: e for e in a.streamed + b.streamed}
    assert len(streamed) == len(a.streamed) + len(b.streamed), "a sequence number used twice"
    assert all(min(e.seq for e in b.streamed) > e.seq for e in a.streamed)
    assert [_untimed(e) for e in stream] == [_untimed(streamed[e.seq]) for e in stream], "an event differs"
    assert stream[-1].HasField("finished") and any(e.HasField("resumed") for e in watched)
    # Every text delta a client was shown is in the record (merged), with its seq.
    record = await recorder.load(client, tid)
    assert record is not None
    recorded = {p.seq: p for e in record.events for p in recorder.pieces(e)}
    assert all(_untimed(recorded.get(e.seq)) == _untimed(e) for e in a.streamed if e.HasField("text"))


def _untimed(event: pb.RunEvent | None) -> pb.RunEvent | None:
    """A delta split back from a merged text event carries the merged event's time (its first delta's)."""
    if event is None or not event.HasField("text"):
        return event
    out = pb.RunEvent()
    out.CopyFrom(event)
    out.ClearField("time")
    return out


async def _watch(client: aredis.Redis, tid: str, from_seq: int) -> AsyncIterator[pb.RunEvent]:
    async with asyncio.timeout(10):
        async for event in recorder.watch(client, tid, from_seq, poll_s=0.01):
            yield event


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans())
def test_watch_from_the_hint_gives_every_event_once_in_order_after_any_handover(redis_server, plan: Plan) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            await _scenario(client, f"watch-{time.monotonic_ns()}", plan)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_merged_text_event_splits_back_into_its_deltas() -> None:
    deltas = [pb.RunEvent(trajectory_id="t", seq=5 + i, step=1, text=pb.TextDelta(channel=pb.CHANNEL_THINK, text=t))
              for i, t in enumerate(["héllo ", "wörld", "🙂"])]
    one = recorder.merged(deltas)
    assert one.seq == 5 and one.text.text == "héllo wörld🙂" and list(one.text.piece_chars) == [6, 5, 1]
    assert recorder.pieces(one) == deltas and recorder.last_seq(one) == 7
    assert recorder.merged(deltas[:1]) == deltas[0]  # a single delta is recorded as streamed
