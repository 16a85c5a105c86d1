"""Trajectories recorded in Redis, every event, so GetTrajectory can return them whole.

Text deltas are merged per step and channel before they are written: a step streamed as hundreds
of chunks is stored as one event per channel. Everything expires after the configured TTL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

import redis.asyncio as aredis
from google.protobuf.timestamp_pb2 import Timestamp

from toolfabric.v1 import fabric_pb2 as pb

_KEY = "toolfabric:trajectory:"


def meta_key(trajectory_id: str) -> str:
    return f"{_KEY}{trajectory_id}"


def events_key(trajectory_id: str) -> str:
    return f"{_KEY}{trajectory_id}:events"


class TrajectoryRecorder:
    """Writes one trajectory's events; `finish` flushes and stores the outcome."""

    def __init__(self, client: aredis.Redis, trajectory_id: str, ttl_s: int,
                 mirror: Callable[[pb.RunEvent], None] | None = None) -> None:
        self._redis, self._id, self._ttl = client, trajectory_id, ttl_s
        self._pending: pb.RunEvent | None = None
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
        kind = event.WhichOneof("event")
        if kind == "text":
            pending = self._pending
            if pending is not None and pending.step == event.step and pending.text.channel == event.text.channel:
                pending.text.text += event.text.text
                return
            await self._flush()
            self._pending = pb.RunEvent()
            self._pending.CopyFrom(event)
            return
        await self._flush()
        fields: dict[str, bytes | str | int] = {}
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
        await self._append(event, fields)

    async def _flush(self) -> None:
        if self._pending is not None:
            event, self._pending = self._pending, None
            await self._append(event, {})

    async def _append(self, event: pb.RunEvent, fields: dict[str, bytes | str | int]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(events_key(self._id), event.SerializeToString())
        pipe.expire(events_key(self._id), self._ttl)
        if fields:
            pipe.hset(meta_key(self._id), mapping=fields)  # type: ignore[arg-type]
        await pipe.execute()
        if self._mirror is not None:
            self._mirror(event)


async def load(client: aredis.Redis, trajectory_id: str) -> pb.Trajectory | None:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(meta_key(trajectory_id))
    pipe.lrange(events_key(trajectory_id), 0, -1)
    meta, events = await pipe.execute()
    if not meta:
        return None
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
    """An extra field of the record (gateway/resume.py keeps the validated request here)."""
    await client.hset(meta_key(trajectory_id), name, value)


async def get_field(client: aredis.Redis, trajectory_id: str, name: str) -> str | None:
    value = await client.hget(meta_key(trajectory_id), name)
    return value.decode() if isinstance(value, bytes) else value


async def events_from(client: aredis.Redis, trajectory_id: str, index: int) -> list[pb.RunEvent]:
    """Recorded events from position `index` on (Watch follows a trajectory with this)."""
    return [pb.RunEvent.FromString(e) for e in await client.lrange(events_key(trajectory_id), index, -1)]


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
