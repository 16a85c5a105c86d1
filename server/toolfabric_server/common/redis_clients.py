"""Every Redis client of the fabric is made here, for one of two roles, and survives a Redis restart.

Roles (production runs one Redis per role; a dev stack one Redis for both):
- state: the Celery broker and results, trajectory records and events, leases, admission, rate limits —
  durable (AOF), `noeviction` (TOOLFABRIC_REDIS_URL);
- cache: image blobs and the hot cache tier — LRU, bounded by `maxmemory`, so image traffic can fill it without
  ever stopping the broker (TOOLFABRIC_CACHE_REDIS_URL; empty = the state Redis).

A pooled connection that a Redis restart broke is found before use (`health_check_interval`: a connection idle
longer is PINGed first) or when a command fails on it; the command is then sent again on a new connection,
backing off exponentially (TOOLFABRIC_REDIS_RETRIES times, at most TOOLFABRIC_REDIS_BACKOFF_MAX_S apart). So a
restart of a few seconds delays the calls in flight, it does not turn them into errors. Only connection errors
and timeouts are retried: a command the server refused (OOM, wrong type) fails at once.
"""

from __future__ import annotations

from typing import Any, Literal

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from toolfabric_server.common.settings import CommonSettings

Role = Literal["state", "cache"]


def url(role: Role, common: CommonSettings) -> str:
    return common.cache_url if role == "cache" else common.redis_url


def options(common: CommonSettings, asynchronous: bool = False) -> dict[str, Any]:
    """The reconnect behaviour every client and pool gets (keyword arguments of `from_url`)."""
    backoff = ExponentialBackoff(cap=common.redis_backoff_max_s, base=0.05)
    return {
        "retry": (AsyncRetry if asynchronous else Retry)(backoff, common.redis_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError],
        "health_check_interval": common.redis_health_check_interval_s,
    }


def sync_client(role: Role, common: CommonSettings, **kwargs: Any) -> redis.Redis:
    """A blocking client for `role` (worker threads, Celery tasks, CLIs); `kwargs` e.g. socket_timeout."""
    return redis.Redis.from_url(url(role, common), **(options(common) | kwargs))


def async_client(role: Role, common: CommonSettings, **kwargs: Any) -> aredis.Redis:
    """An asyncio client for `role`."""
    return aredis.Redis.from_url(url(role, common), **(options(common, asynchronous=True) | kwargs))
