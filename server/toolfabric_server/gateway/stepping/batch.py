"""One Redis round trip for a whole step request's records.

`TrajectoryRecorder` writes each event with a pipeline of its own; a step request of a thousand
trajectories would make thousands of round trips. `QueuedWrites` looks like a Redis client to the
recorder but queues every command on one shared pipeline, which the step service executes once,
together with the trajectories' new state, when the request's items are done.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aredis


class QueuedWrites:
    def __init__(self, client: aredis.Redis) -> None:
        self.pipe = client.pipeline(transaction=False)

    def pipeline(self, transaction: bool = False) -> QueuedWrites:
        return self

    def __getattr__(self, command: str) -> Any:
        return getattr(self.pipe, command)  # rpush, expire, hset, set, delete: queued, not sent

    async def execute(self) -> list[Any]:
        return []  # the recorder's "execute": everything goes out with `flush`

    async def flush(self) -> None:
        await self.pipe.execute()

    def as_client(self) -> aredis.Redis:
        return cast(aredis.Redis, self)
