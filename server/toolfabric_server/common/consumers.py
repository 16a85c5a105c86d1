"""Which Celery queues have a live consumer, from the workers' heartbeats in Redis.

Each worker's main process beats every `TOOLFABRIC_WORKER_HEARTBEAT_INTERVAL_S` while its consumer is
connected: a sorted set per queue, `toolfabric:consumers:<queue>`, maps the worker's hostname to the time
of its last beat. A worker killed whole stops beating and ages out after `heartbeat_ttl_s`; one stopped
cleanly leaves at once. Gateways read it to fail a call fast when nobody consumes its queue, and to tell
that the worker running a task has died (its task is then sent again).
"""

from __future__ import annotations

import time

import redis
import redis.asyncio as aredis

from toolfabric_server.common import redis_clients
from toolfabric_server.common.settings import CommonSettings, WorkerSettings

_KEY = "toolfabric:consumers:"


def _key(queue: str) -> str:
    return _KEY + queue


class ConsumerRegistry:
    """The worker side: beat and leave (synchronous: it runs on the worker's timer thread)."""

    def __init__(self, client: redis.Redis, queues: list[str], ttl_s: float) -> None:
        self._redis, self._queues, self._ttl = client, queues, ttl_s

    @classmethod
    def from_settings(cls, common: CommonSettings, worker: WorkerSettings,
                      queues: list[str] | None = None) -> ConsumerRegistry:
        return cls(redis_clients.sync_client("state", common, socket_timeout=2, socket_connect_timeout=2),
                   queues or [], worker.heartbeat_ttl_s)

    def beat(self, hostname: str, queues: list[str] | None = None) -> None:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for queue in queues or self._queues:
            pipe.zadd(_key(queue), {hostname: now})
            pipe.zremrangebyscore(_key(queue), 0, now - 10 * self._ttl)  # long-dead workers
        pipe.execute()

    def leave(self, hostname: str, queues: list[str] | None = None) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for queue in queues or self._queues:
            pipe.zrem(_key(queue), hostname)
        pipe.execute()

    def close(self) -> None:
        self._redis.close()


class LiveConsumers:
    """The gateway side: which queues are consumed, and whether a given worker is alive."""

    def __init__(self, client: aredis.Redis, ttl_s: float, remember_s: float = 0.5) -> None:
        self._redis, self._ttl, self._remember_s = client, ttl_s, remember_s
        self._counted: dict[str, tuple[float, int]] = {}  # queue -> (when, a count > 0)

    async def count(self, queue: str) -> int:
        """Live consumers of `queue`. A count above zero is remembered for `remember_s` (far below the heartbeat
        TTL that decides it anyway): a call does not pay a Redis round trip to learn what the last one learnt."""
        now = time.monotonic()
        counted = self._counted.get(queue)
        if counted is not None and now - counted[0] < self._remember_s:
            return counted[1]
        found = int(await self._redis.zcount(_key(queue), time.time() - self._ttl, "+inf"))
        if found:
            self._counted[queue] = (now, found)
        else:
            self._counted.pop(queue, None)
        return found

    async def live(self, queue: str) -> set[str]:
        """The hostnames of the queue's workers that beat within the TTL."""
        names = await self._redis.zrangebyscore(_key(queue), time.time() - self._ttl, "+inf")
        return {n.decode() if isinstance(n, bytes) else str(n) for n in names}

    async def alive(self, queue: str, hostname: str) -> bool:
        score = await self._redis.zscore(_key(queue), hostname)
        return score is not None and float(score) >= time.time() - self._ttl
