"""Revoked tool tasks, remembered in Redis until they expire.

Celery's revoke is a broadcast that only workers alive at that moment keep (in memory). A worker that
starts later — a restarted one picking up a dead worker's queued or redelivered tasks — would run calls
nobody waits for. So the gateway also writes `toolfabric:revoked:<task id>` with the task's remaining life,
and a worker checks it before running a task, in the round trip that marks it STARTED (common/worker.py), and again
before each call of a batch that waited a while behind the others (common/batches.py).
"""

from __future__ import annotations

import redis
import redis.asyncio as aredis

_KEY = "toolfabric:revoked:"


async def mark(client: aredis.Redis, task_id: str, ttl_s: float) -> None:
    await client.set(_KEY + task_id, 1, px=max(int(ttl_s * 1000), 1000))


def key(task_id: str) -> str:
    """The mark's key (a worker checks it in the same script that marks the task STARTED, common/reply_lists.py)."""
    return _KEY + task_id


def revoked_among(client: redis.Redis, task_ids: list[str]) -> set[str]:
    """Which of `task_ids` are revoked (one round trip)."""
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.exists(_KEY + task_id)
        found = pipe.execute()
    return {task_id for task_id, exists in zip(task_ids, found, strict=True) if exists}
