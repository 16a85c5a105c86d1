"""Politeness per host, shared by every fetch worker through Redis: a rate and a concurrency cap.

The rate is the shared token bucket (toolfabric_server.common.ratelimit). Concurrency is a counting
semaphore of leases in a sorted set scored by expiry, renewed while the fetch runs
(common/renewal.py): a fetch that ends or is cancelled frees its slot at once, a worker killed
mid-fetch stops renewing and its lease runs out within `lease_s` (TOOLFABRIC_WORKER_LEASE_TTL_S, 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aredis

from toolfabric_server.common.ratelimit import RateLimitExceeded, TokenBucket
from toolfabric_server.common.renewal import renewed
from toolfabric_server.web.errors import FetchTimeout

_PREFIX = "toolfabric:fetch:slots:"

# Leases are scored by expiry on the Redis server's clock, so workers' clocks need not agree.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""
# KEYS[1] lease set; ARGV: lease ms, limit, token. 1 = got a slot, 0 = all taken.
_ACQUIRE = _NOW + """
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
  return 1
end
return 0
"""
_COUNT = _NOW + "return redis.call('ZCARD', KEYS[1])"
# KEYS[1] lease set; ARGV: lease ms, token. Extends a lease still held (an expired one is gone for good).
_RENEW = _NOW + """
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
  return 1
end
return 0
"""


class HostLimits:
    """`async with limits.slot(host):` waits for a token and a free slot for that host."""

    def __init__(self, redis: aredis.Redis, rate_per_s: float, burst: int, concurrency: int,
                 max_wait_s: float, lease_s: float) -> None:
        self._redis = redis
        self._rate, self._burst = rate_per_s, burst
        self._concurrency = concurrency
        self._max_wait_s = max_wait_s
        self._lease_ms = int(lease_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._count = redis.register_script(_COUNT)
        self._renew = redis.register_script(_RENEW)

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        start = time.monotonic()
        bucket = TokenBucket(self._redis, f"fetch:host:{host}", self._rate, self._burst)
        try:
            await bucket.acquire(1, self._max_wait_s)
        except RateLimitExceeded as exc:
            raise FetchTimeout(f"too many requests to {host} right now: {exc}") from None
        key = _PREFIX + host
        token = uuid.uuid4().hex
        delay = 0.01
        while not await self._acquire(keys=[key], args=[self._lease_ms, self._concurrency, token]):
            if time.monotonic() - start > self._max_wait_s:
                raise FetchTimeout(
                    f"waited {self._max_wait_s:g}s for one of the {self._concurrency} connections allowed to {host}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        try:
            async with renewed(lambda: self._renew(keys=[key], args=[self._lease_ms, token]), self._lease_ms / 1000):
                yield
        finally:
            await self._redis.zrem(key, token)

    async def in_use(self, host: str) -> int:
        """Slots of `host` held right now (by any worker)."""
        return int(await self._count(keys=[_PREFIX + host]))
