"""The search service of one worker process: its clients and providers, on the worker's async bridge.

The service is asyncio (concurrent queries, one pooled HTTP client, Redis), built once per process on
the bridge's loop (services/common/bridge.py), which Celery's synchronous handlers call into.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from services.common import redis_clients, settings
from services.common.blob_urls import signed_url
from services.common.blobs import AsyncBlobStore
from services.common.bridge import AsyncBridge
from services.common.bundle import open_bundle
from services.common.cache import Cache
from services.common.cache_store import open_store
from services.common.errors import ConfigurationError
from services.common.ratelimit import TokenBucket
from services.common.settings import CommonSettings
from services.index import SearchIndex, default_index
from services.search import settings as search_settings
from services.search.http import ProviderHTTP
from services.search.providers.base import Provider
from services.search.providers.local import LocalProvider
from services.search.providers.searxng import SearxngProvider
from services.search.providers.serper import SerperProvider
from services.search.service import SearchService
from services.search.settings import SearchSettings

T = TypeVar("T")


async def build_service(common: CommonSettings, config: SearchSettings,
                        index: SearchIndex | None = None) -> tuple[SearchService, Callable[[], Awaitable[None]]]:
    """A service wired from settings (call inside the loop it will run on); returns it and its closer."""
    redis = redis_clients.async_client("cache", common)  # blobs, hot cache, provider rate buckets
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(config.provider_timeout_s, connect=min(5.0, config.provider_timeout_s)),
        headers={"User-Agent": "toolfabric-search/0.1"},
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
    )
    http = ProviderHTTP(client, config.provider_retries, config.provider_backoff_s, config.provider_backoff_max_s,
                        config.provider_max_rate_wait_s)

    def bucket(name: str) -> TokenBucket:
        return TokenBucket(redis, f"search:{name}", config.provider_rate_per_s, config.provider_burst)

    providers: list[Provider] = []
    for name in config.providers:
        if name == "serper":
            providers.append(SerperProvider(http, bucket("serper"), config.serper_base_url, config.serper_api_key,
                                            config.serper_gl, config.serper_hl))
        elif name == "searxng":
            providers.append(SearxngProvider(http, bucket("searxng"), config.searxng_url, config.searxng_language))
        elif name == "local":
            providers.append(LocalProvider(index or default_index(), common.max_image_pixels))
        else:
            raise ConfigurationError(f"unknown search provider {name!r}; use serper, searxng or local")
    store = None if common.cache_mode == "off" else open_store(common.elasticsearch_url, common.data_dir,
                                                                  common.elasticsearch_prefix)
    cache = Cache(redis, store, common.cache_mode, common.cache_hot_ttl_s, common.cache_persistent_ttl_s,
                  common.cache_single_flight_wait_s, common.worker_lease_ttl_s,
                  bundle=open_bundle(common.cache_bundle))
    service = SearchService(providers, cache, AsyncBlobStore(redis, common.blob_ttl_s), config, signed_url)

    async def close() -> None:
        await client.aclose()
        await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        if store is not None:
            store.close()

    return service, close


# One per worker process, started on the first call (services/common/bridge.py).
BRIDGE: AsyncBridge[SearchService] = AsyncBridge(
    "search", lambda: build_service(settings.common(), search_settings.search()))


def run(call: Callable[[SearchService], Awaitable[T]]) -> T:
    """Run `call(service)` on this process's loop and wait for it (from any thread)."""
    return BRIDGE.run(call)


def reset() -> None:
    """Close this process's service (settings changed; tests)."""
    BRIDGE.close()
