"""Token buckets in Redis, shared by every worker process (provider quotas, per-host fetch limits).

One Lua script refills and takes tokens atomically using the Redis server's clock, so
workers on different machines with skewed clocks agree. A bucket holds up to `burst` tokens
and refills at `rate_per_s`; `acquire` waits (asynchronously) until its tokens are there, or
raises `RateLimitExceeded` if that would take longer than `max_wait_s`.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis

from toolfabric_server.common.errors import ToolUnavailable
from toolfabric_server.common.telemetry import observe

_PREFIX = "toolfabric:ratelimit:"

# KEYS[1] bucket; ARGV: rate per second, burst, tokens wanted. Returns 0 when taken, else
# the milliseconds until enough tokens will be there (nothing is taken then).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = math.ceil((want - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RateLimitExceeded(ToolUnavailable):
    """Waiting for the shared bucket would take longer than allowed."""


class TokenBucket:
    """A named bucket (e.g. `search:serper`, `fetch:host:example.org`)."""

    def __init__(self, redis: aredis.Redis, name: str, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"token bucket {name}: rate must be > 0 and burst >= 1 (got {rate_per_s}, {burst})")
        self.name, self.rate_per_s, self.burst = name, rate_per_s, burst
        self._key = _PREFIX + name
        self._take = redis.register_script(_TAKE)

    async def try_acquire(self, tokens: int = 1) -> float:
        """Take `tokens` now if there are enough; returns 0.0, else the seconds to wait."""
        if tokens > self.burst:
            raise ValueError(f"cannot take {tokens} tokens from bucket {self.name} of burst {self.burst}")
        wait_ms = await self._take(keys=[self._key], args=[self.rate_per_s, self.burst, tokens])
        return int(wait_ms) / 1000.0

    async def acquire(self, tokens: int = 1, max_wait_s: float = 10.0) -> float:
        """Wait for and take `tokens`; returns the seconds waited."""
        waited = 0.0
        while True:
            wait = await self.try_acquire(tokens)
            if wait == 0.0:
                if waited:
                    observe.rate_limit_wait(self.name, waited)
                return waited
            if waited + wait > max_wait_s:
                raise RateLimitExceeded(
                    f"rate limit {self.name} ({self.rate_per_s:g}/s, burst {self.burst}) would need "
                    f"{waited + wait:.1f}s of waiting, over the {max_wait_s:g}s allowed"
                )
            await asyncio.sleep(wait)
            waited += wait
