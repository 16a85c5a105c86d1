"""Leases on running trajectories, so no record stays RUNNING when its gateway dies.

Every trajectory a gateway runs is in the set `toolfabric:running` and has a lease key
`toolfabric:lease:<id>` naming the gateway, with a TTL the gateway renews every `ttl / 3`. A gateway
that dies (SIGKILL, OOM, node loss) stops renewing; once the key expires, any replica's reaper claims it
(SET NX) and resumes the trajectory or ends it FAILED. Ownership checks and renewals are Lua scripts,
so a gateway never extends or drops a lease another has claimed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import redis.asyncio as aredis

log = logging.getLogger(__name__)
RUNNING = "toolfabric:running"
_LEASE = "toolfabric:lease:"

# Renew every lease this gateway holds; returns the ids it no longer holds.
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2])
  else table.insert(lost, key) end
end
return lost
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def owner_id() -> str:
    """This gateway process, unique across replicas and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    def __init__(self, client: aredis.Redis, owner: str, ttl_s: float) -> None:
        self._redis, self.owner, self._ttl_ms = client, owner, int(ttl_s * 1000)
        self.held: set[str] = set()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(self, trajectory_id: str) -> None:
        """Take the lease of a trajectory this gateway starts."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(_LEASE + trajectory_id, self.owner, px=self._ttl_ms)
        pipe.sadd(RUNNING, trajectory_id)
        await pipe.execute()
        self.held.add(trajectory_id)

    async def claim(self, trajectory_id: str) -> bool:
        """Take the lease of a trajectory whose gateway is gone; False if another replica was first."""
        if await self._redis.set(_LEASE + trajectory_id, self.owner, px=self._ttl_ms, nx=True):
            self.held.add(trajectory_id)
            return True
        return False

    async def release(self, trajectory_id: str, finished: bool) -> None:
        """Drop the lease; `finished` also takes the trajectory out of the running set (else a replica
        resumes it at once: a hand-off)."""
        self.held.discard(trajectory_id)
        await self._release(keys=[_LEASE + trajectory_id], args=[self.owner])
        if finished:
            await self._redis.srem(RUNNING, trajectory_id)

    async def holder(self, trajectory_id: str) -> str | None:
        value = await self._redis.get(_LEASE + trajectory_id)
        return _text(value) if value else None

    async def orphans(self) -> list[str]:
        """Running trajectories whose lease has expired."""
        ids = [_text(m) for m in await self._redis.smembers(RUNNING)]
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for tid in ids:
            pipe.exists(_LEASE + tid)
        return [tid for tid, exists in zip(ids, await pipe.execute(), strict=True) if not exists]

    async def renew(self) -> list[str]:
        held = sorted(self.held)
        if not held:
            return []
        lost = await self._renew(keys=[_LEASE + t for t in held], args=[self.owner, self._ttl_ms])
        return [_text(k)[len(_LEASE):] for k in lost]

    async def keep_renewing(self) -> None:
        """Runs for the gateway's life."""
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                for tid in await self.renew():
                    log.error("lost the lease of trajectory %s to another gateway", tid)
                    self.held.discard(tid)
            except aredis.RedisError as exc:
                log.warning("lease renewal failed (%s); retrying", exc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
