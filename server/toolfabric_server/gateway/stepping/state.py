"""What the step API keeps of a trajectory between steps, in Redis so any gateway replica serves any step.

One JSON value per live trajectory (its mode, dialect, counters, trace and image registry) and, once
it is finished, a small tombstone, so an action for a finished id is refused instead of silently
starting a new trajectory. A batch reads all its trajectories in one MGET and queues their writes on the
request's one pipeline (gateway/stepping/batch.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aredis
from pydantic import BaseModel, Field

from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.engine.images import ImageRegistry, RegisteredImage

_KEY = "toolfabric:step:"


class TrajectoryState(BaseModel):
    mode: str
    model: str
    question: str = ""
    steps: int = 0
    tool_calls: int = 0
    seq: int = 0  # last event sequence number recorded
    trace_id: str = ""
    span_id: str = ""
    started: float = 0.0
    images: list[RegisteredImage] = Field(default_factory=list)  # pydantic reads the dataclass

    def registry(self, blobs: AsyncBlobStore) -> ImageRegistry:
        """The trajectory's image registry as it was (names come out the same: same order, same kinds)."""
        registry = ImageRegistry(blobs)
        for i in self.images:
            if i.step == 0:
                registry.add_input(i.ref, i.width, i.height, i.mime_type)
            else:
                registry.add_output(i.ref, i.width, i.height, i.origin, i.mime_type, i.step)
        return registry

    def keep_images(self, images: Sequence[RegisteredImage]) -> None:
        self.images = list(images)


@dataclass
class Loaded:
    state: TrajectoryState | None
    finished: str | None  # why the trajectory ended, when it has


def _state_key(trajectory_id: str) -> str:
    return f"{_KEY}{trajectory_id}"


def _done_key(trajectory_id: str) -> str:
    return f"{_KEY}{trajectory_id}:finished"


def keys(trajectory_id: str) -> tuple[str, str]:
    """Every Redis key the step API keeps for a trajectory (its state and its tombstone)."""
    return _state_key(trajectory_id), _done_key(trajectory_id)


class StateStore:
    def __init__(self, client: aredis.Redis, ttl_s: int, finished_ttl_s: int) -> None:
        self._redis, self._ttl, self._finished_ttl = client, ttl_s, finished_ttl_s

    async def load(self, trajectory_ids: Sequence[str]) -> list[Loaded]:
        if not trajectory_ids:
            return []
        keys = [k for tid in trajectory_ids for k in (_state_key(tid), _done_key(tid))]
        values = await self._redis.mget(keys)
        out = []
        for state, done in zip(values[::2], values[1::2], strict=True):
            out.append(Loaded(TrajectoryState.model_validate_json(state) if state else None,
                              done.decode() if isinstance(done, bytes) else done))
        return out

    def save(self, pipe: aredis.client.Pipeline, keep: dict[str, TrajectoryState], release: dict[str, str]) -> None:
        """Queue on `pipe`: the trajectories that go on; the released ones dropped, leaving why they ended."""
        for tid, state in keep.items():
            pipe.set(_state_key(tid), state.model_dump_json(), ex=self._ttl)
        for tid, reason in release.items():
            pipe.delete(_state_key(tid))
            pipe.set(_done_key(tid), reason, ex=self._finished_ttl)
