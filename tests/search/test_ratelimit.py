"""The Redis token bucket shared by all workers."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aredis

from toolfabric_server.common.ratelimit import RateLimitExceeded, TokenBucket


@pytest.fixture
async def clients(redis_server, redis_client: redis.Redis):  # type: ignore[no-untyped-def]
    made = [aredis.Redis.from_url(redis_server.url) for _ in range(3)]
    yield made
    for c in made:
        await c.aclose()


async def test_burst_is_shared_by_every_client_of_the_same_bucket(clients: list[aredis.Redis]) -> None:
    buckets = [TokenBucket(c, "search:shared", rate_per_s=0.001, burst=4) for c in clients]
    waits = [await buckets[i % 3].try_acquire() for i in range(6)]
    assert waits[:4] == [0.0] * 4 and all(w > 0 for w in waits[4:])


async def test_acquire_waits_for_refill_at_the_configured_rate(clients: list[aredis.Redis]) -> None:
    bucket = TokenBucket(clients[0], "search:refill", rate_per_s=20.0, burst=1)
    started = time.monotonic()
    for _ in range(4):
        await bucket.acquire(max_wait_s=2.0)
    elapsed = time.monotonic() - started
    assert 0.12 <= elapsed < 1.0  # three refills at 20/s ≈ 0.15 s


async def test_acquire_gives_up_with_a_clear_error_when_the_wait_is_too_long(clients: list[aredis.Redis]) -> None:
    bucket = TokenBucket(clients[0], "search:slow", rate_per_s=0.1, burst=1)
    await bucket.acquire()
    with pytest.raises(RateLimitExceeded) as exc:
        await bucket.acquire(max_wait_s=1.0)
    assert str(exc.value).startswith("rate limit search:slow (0.1/s, burst 1) would need 10.0s of waiting")


async def test_concurrent_acquirers_never_exceed_the_burst(clients: list[aredis.Redis]) -> None:
    buckets = [TokenBucket(c, "search:race", rate_per_s=0.001, burst=10) for c in clients]
    waits = await asyncio.gather(*(buckets[i % 3].try_acquire() for i in range(40)))
    assert sum(1 for w in waits if w == 0.0) == 10


def test_a_bucket_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(aredis.Redis(), "x", rate_per_s=0, burst=1)
