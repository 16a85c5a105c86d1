"""The gateway's Redis connections: one bounded pool per process and role, sized from settings.

A request that finds every connection busy waits up to `redis_pool_timeout_s` for one, then fails with
an error naming the setting (redis-py's own pool would fail at once with "Too many connections").
Connections reconnect after a Redis restart (common/redis_clients.py).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError

from toolfabric_server.common import redis_clients
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.gateway.settings import GatewaySettings


class PoolExhausted(RedisConnectionError):
    """Every Redis connection of this gateway stayed busy for the pool timeout."""


class _Pool(aredis.BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)
        except RedisConnectionError as exc:
            if "No connection available" not in str(exc):
                raise
            raise PoolExhausted(
                f"all {self.max_connections} Redis connections of this gateway stayed busy for {self.timeout:g}s "
                "(raise TOOLFABRIC_GATEWAY_REDIS_MAX_CONNECTIONS or run more gateway processes)") from exc


def redis_client(url: str, common: CommonSettings, gw: GatewaySettings) -> aredis.Redis:
    pool = _Pool.from_url(url, max_connections=gw.redis_max_connections, timeout=gw.redis_pool_timeout_s,
                          **redis_clients.options(common, asynchronous=True))
    return aredis.Redis(connection_pool=pool)


def redis_pair(common: CommonSettings, gw: GatewaySettings) -> tuple[aredis.Redis, aredis.Redis]:
    """The state client (broker, records, leases) and the cache client (image blobs): one pool when the
    deployment runs one Redis, two when it splits them by role."""
    state = redis_client(common.redis_url, common, gw)
    return state, (state if common.cache_url == common.redis_url else redis_client(common.cache_url, common, gw))
