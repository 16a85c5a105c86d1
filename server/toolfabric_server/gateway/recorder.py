"""Trajectories recorded in Redis, every event, so GetTrajectory can return them whole.

Every event is recorded before the client sees it (gateway/delivery.py awaits `record`), text deltas
included: a handover or a crash in the middle of a model stream loses no text the client saw, and the
sequence numbers go on after the highest one recorded, never reusing one.

Text deltas are merged per step and channel: a step streamed as hundreds of chunks is one event per
channel in the record (`TextDelta.piece_chars` says where each delta ended, so Watch can split it back).
While a run of deltas is open, each one is appended to a small side list (`…:events:open`); when the run
closes (any other event) the merged event replaces the side list in one transaction. A reader takes
both lists in one transaction (`follow`, `load`). Everything expires after the configured TTL.

`record_many` writes a batch of events (gateway/delivery.py gathers the deltas of a few milliseconds and the
event after them) in one transaction, one round trip: Redis round trips were most of the gateway's CPU.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import cast

import redis.asyncio as aredis
from google.protobuf.timestamp_pb2 import Timestamp

from toolfabric.v1 import fabric_pb2 as pb

_KEY = "toolfabric:trajectory:"


def meta_key(trajectory_id: str) -> str:
    return f"{_KEY}{trajectory_id}"


def events_key(trajectory_id: str) -> str:
    return f"{_KEY}{trajectory_id}:events"


def open_key(trajectory_id: str) -> str:
    """The text deltas of the run of deltas still open (not yet merged into one event)."""
    return f"{_KEY}{trajectory_id}:events:open"


def merged(deltas: list[pb.RunEvent]) -> pb.RunEvent:
    """Consecutive text deltas of one step and channel as one event (the first one's seq), pieces noted."""
    out = pb.RunEvent()
    out.CopyFrom(deltas[0])
    out.text.text = "".join(d.text.text for d in deltas)
    del out.text.piece_chars[:]
    if len(deltas) > 1:
        out.text.piece_chars.extend(len(d.text.text) for d in deltas)
    return out


def pieces(event: pb.RunEvent) -> list[pb.RunEvent]:
    """A recorded event as the client saw it: a merged text event split back into its deltas."""
    if not event.HasField("text") or len(event.text.piece_chars) <= 1:
        return [event]
    out, start = [], 0
    for i, length in enumerate(event.text.piece_chars):
        piece = pb.RunEvent()
        piece.CopyFrom(event)
        piece.seq = event.seq + i
        piece.text.text = event.text.text[start:start + length]
        del piece.text.piece_chars[:]
        out.append(piece)
        start += length
    return out


def last_seq(event: pb.RunEvent) -> int:
    """The highest sequence number a recorded event stands for (a merged one stands for several)."""
    return event.seq + max(len(event.text.piece_chars), 1) - 1 if event.HasField("text") else event.seq


class TrajectoryRecorder:
    """Writes one trajectory's events (one writer at a time: the lease holder's)."""

    def __init__(self, client: aredis.Redis, trajectory_id: str, ttl_s: int,
                 mirror: Callable[[pb.RunEvent], None] | None = None) -> None:
        self._redis, self._id, self._ttl = client, trajectory_id, ttl_s
        self._open: list[pb.RunEvent] = []  # the open run of text deltas, as recorded in open_key
        self._mirror = mirror  # the durable store's writer (gateway/archive.py): gets each event as stored here

    async def begin(self, question: str, mode: int, model: str, *, tenant: str = "", conversation_id: str = "",
                    parent_trajectory_id: str = "", labels: dict[str, str] | None = None, eval_run: str = "",
                    budgets: pb.Budgets | None = None) -> None:
        created = Timestamp()
        created.GetCurrentTime()
        pipe = self._redis.pipeline(transaction=False)
        # Labels, eval run and budgets are here as well as in the durable store, so that GetTrajectory of a
        # record Redis still holds never touches the store.
        pipe.hset(meta_key(self._id), mapping={
            "question": question, "mode": mode, "model": model, "status": pb.STATUS_RUNNING,
            "created_at": created.SerializeToString(), "tenant": tenant, "conversation_id": conversation_id,
            "parent_trajectory_id": parent_trajectory_id, "labels": json.dumps(labels or {}),
            "eval_run": eval_run, "budgets": (budgets or pb.Budgets()).SerializeToString(),
        })
        pipe.expire(meta_key(self._id), self._ttl)
        await pipe.execute()

    async def record(self, event: pb.RunEvent) -> None:
        await self.record_many([event])

    async def record_many(self, events: list[pb.RunEvent], *, close_run: bool = False) -> None:
        """Records `events` in order in one round trip (one transaction): a batch of deltas and the events after
        them costs what one event did. `close_run`: merge the run of deltas still open at the end too."""
        done: list[pb.RunEvent] = []  # appended to the events list: merged runs of deltas and other events
        fields: dict[str, bytes | str | int] = {}
        run, unwritten = list(self._open), 0  # the open run of deltas; how many of its last are not in open_key
        closed = False  # the run that was open in Redis is merged now: open_key is rewritten
        for event in events:
            kind = event.WhichOneof("event")
            if kind == "text":
                current = run[-1] if run else None
                if current is not None and (current.step != event.step or current.text.channel != event.text.channel):
                    done.append(merged(run))
                    run, unwritten, closed = [], 0, True
                run.append(event)
                unwritten += 1
                continue
            if run:
                done.append(merged(run))
                run, unwritten, closed = [], 0, True
            done.append(event)
            _meta_fields(event, kind, fields)
        if close_run and run:
            done.append(merged(run))
            run, unwritten, closed = [], 0, True
        if not done and not unwritten:
            return
        # Only deltas appended to the open run: one RPUSH is atomic by itself, no transaction needed.
        pipe = self._redis.pipeline(transaction=bool(done or closed or fields))
        if done:
            pipe.rpush(events_key(self._id), *[e.SerializeToString() for e in done])
            pipe.expire(events_key(self._id), self._ttl)
        if closed:
            pipe.delete(open_key(self._id))
        if unwritten:
            pipe.rpush(open_key(self._id), *[e.SerializeToString() for e in run[len(run) - unwritten:]])
            if unwritten == len(run):  # the run starts here
                pipe.expire(open_key(self._id), self._ttl)
        if fields:
            pipe.hset(meta_key(self._id), mapping=fields)  # type: ignore[arg-type]
        await pipe.execute()
        self._open = run
        if self._mirror is not None:
            for event in done:
                self._mirror(event)

    async def adopt_open(self) -> None:
        """A gateway taking the trajectory over: close the run of deltas the lost one left open."""
        raw = await self._redis.lrange(open_key(self._id), 0, -1)
        self._open = [pb.RunEvent.FromString(r) for r in raw]
        if self._open:
            await self.record_many([], close_run=True)


def _meta_fields(event: pb.RunEvent, kind: str | None, fields: dict[str, bytes | str | int]) -> None:
    """What an event changes in the record's hash (read by GetTrajectory without the events)."""
    if kind == "started":
        fields["trace_id"] = event.started.trace_id
    elif kind == "answer":
        fields["answer"] = event.answer.text
    elif kind == "usage":
        fields["usage"] = event.usage.SerializeToString()
    elif kind == "finished":
        fields["status"] = event.finished.status
        if event.HasField("time"):
            fields["finished_at"] = event.time.SerializeToString()


async def load(client: aredis.Redis, trajectory_id: str) -> pb.Trajectory | None:
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(meta_key(trajectory_id))
    pipe.lrange(events_key(trajectory_id), 0, -1)
    pipe.lrange(open_key(trajectory_id), 0, -1)
    meta, events, still_open = await pipe.execute()
    if not meta:
        return None
    if still_open:  # a step streaming now (or cut short by a lost gateway): its text so far, merged
        events = [*events, merged([pb.RunEvent.FromString(e) for e in still_open]).SerializeToString()]
    meta = {k.decode(): v for k, v in meta.items()}
    out = pb.Trajectory(
        trajectory_id=trajectory_id, trace_id=meta.get("trace_id", b"").decode(),
        status=cast(pb.Status, int(meta.get("status", 0))), question=meta.get("question", b"").decode(),
        mode=cast(pb.Mode, int(meta.get("mode", 0))), model=meta.get("model", b"").decode(),
        answer=meta.get("answer", b"").decode(), tenant=meta.get("tenant", b"").decode(),
        conversation_id=meta.get("conversation_id", b"").decode(),
        parent_trajectory_id=meta.get("parent_trajectory_id", b"").decode(),
        events=[pb.RunEvent.FromString(e) for e in events],
    )
    if "usage" in meta:
        out.usage.ParseFromString(meta["usage"])
    if "created_at" in meta:
        out.created_at.ParseFromString(meta["created_at"])
    if "finished_at" in meta:
        out.finished_at.ParseFromString(meta["finished_at"])
    if "labels" in meta:
        out.labels.update(json.loads(meta["labels"]))
    out.eval_run = meta.get("eval_run", b"").decode()
    if "budgets" in meta:
        out.budgets.SetInParent()
        out.budgets.ParseFromString(meta["budgets"])
    return out


def is_complete(found: pb.Trajectory) -> bool:
    """Whether a loaded record carries the fields that once only the durable store kept (labels, eval run,
    budgets): records written by gateways before these were recorded in Redis too lack them."""
    return found.HasField("budgets")


async def set_field(client: aredis.Redis, trajectory_id: str, name: str, value: str) -> None:
    """An extra field of the record (gateway/runs.py keeps the validated request here)."""
    await client.hset(meta_key(trajectory_id), name, value)


async def get_field(client: aredis.Redis, trajectory_id: str, name: str) -> str | None:
    value = await client.hget(meta_key(trajectory_id), name)
    return value.decode() if isinstance(value, bytes) else value


async def follow(client: aredis.Redis, trajectory_id: str,
                 index: int) -> tuple[list[pb.RunEvent], list[pb.RunEvent], int | None]:
    """For Watch: the recorded events from position `index` on, the text deltas of the open run after them,
    and the status — read in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.lrange(events_key(trajectory_id), index, -1)
    pipe.lrange(open_key(trajectory_id), 0, -1)
    pipe.hget(meta_key(trajectory_id), "status")
    events, still_open, status = await pipe.execute()
    return ([pb.RunEvent.FromString(e) for e in events], [pb.RunEvent.FromString(e) for e in still_open],
            None if status is None else int(status))


async def status_of(client: aredis.Redis, trajectory_id: str) -> int | None:
    value = await client.hget(meta_key(trajectory_id), "status")
    return None if value is None else int(value)


async def tenant_of(client: aredis.Redis, trajectory_id: str) -> str | None:
    """The tenant that ran a trajectory ("" = anonymous), or None if there is no such record."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(meta_key(trajectory_id))
    pipe.hget(meta_key(trajectory_id), "tenant")
    exists, tenant = await pipe.execute()
    return None if not exists else (tenant or b"").decode()


async def watch(client: aredis.Redis, trajectory_id: str, from_seq: int, poll_s: float) -> AsyncIterator[pb.RunEvent]:
    """Every event from `from_seq` on, exactly as Run streamed it (merged text split back into its deltas), in
    order, each once, until `finished`; sequence numbers only grow, across handovers too. RedisError escapes."""
    index, next_seq = 0, from_seq
    while True:
        events, still_open, status = await follow(client, trajectory_id, index)
        index += len(events)
        for event in [p for e in events for p in pieces(e)] + still_open:
            if event.seq >= next_seq:  # (deltas seen while open come again merged: skipped here)
                yield event
                next_seq = event.seq + 1
            if event.HasField("finished"):
                return
        if status != pb.STATUS_RUNNING and not events and not still_open:
            return  # ended without a recorded `finished` (a record written before this version)
        await asyncio.sleep(poll_s)
