"""The search service of one worker process: its clients and providers, on the worker's async bridge.

The service is asyncio (concurrent queries, one pooled HTTP client, Redis), built once per process on
the bridge's loop (common/bridge.py), which Celery's synchronous handlers call into.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from toolfabric_server.common import redis_clients
from toolfabric_server.common.blob_urls import url_signer
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.bridge import AsyncBridge
from toolfabric_server.common.bundle import open_bundle
from toolfabric_server.common.cache import Cache
from toolfabric_server.common.cache_store import open_store
from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.ratelimit import TokenBucket
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.index import SearchIndex, open_index
from toolfabric_server.tools.search.http import ProviderHTTP
from toolfabric_server.tools.search.providers.base import Provider
from toolfabric_server.tools.search.providers.local import LocalProvider
from toolfabric_server.tools.search.providers.searxng import SearxngProvider
from toolfabric_server.tools.search.providers.serper import SerperProvider
from toolfabric_server.tools.search.service import SearchService
from toolfabric_server.tools.search.settings import SearchSettings


async def build_service(common: CommonSettings, config: SearchSettings,
                        index: SearchIndex | None = None) -> tuple[SearchService, Callable[[], Awaitable[None]]]:
    """A service wired from settings (call inside the loop it will run on); returns it and its closer. The local
    provider searches `index`, or the index the settings name (opened here, closed by the closer)."""
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
    opened: list[SearchIndex] = []
    for name in config.providers:
        if name == "serper":
            providers.append(SerperProvider(http, bucket("serper"), config.serper_base_url, config.serper_api_key,
                                            config.serper_gl, config.serper_hl))
        elif name == "searxng":
            providers.append(SearxngProvider(http, bucket("searxng"), config.searxng_url, config.searxng_language))
        elif name == "local":
            if index is None:
                index = open_index(common)
                opened.append(index)
            providers.append(LocalProvider(index, common.max_image_pixels, common.max_image_pixels_per_byte))
        else:
            raise ConfigurationError(f"unknown search provider {name!r}; use serper, searxng or local")
    store = None if common.cache_mode == "off" else open_store(common.elasticsearch_url, common.data_dir,
                                                                  common.elasticsearch_prefix)
    cache = Cache(redis, store, common.cache_mode, common.cache_hot_ttl_s, common.cache_persistent_ttl_s,
                  common.cache_single_flight_wait_s, common.worker_lease_ttl_s,
                  bundle=open_bundle(common.cache_bundle))
    service = SearchService(providers, cache, AsyncBlobStore(redis, common.blob_ttl_s), config, url_signer(common))

    async def close() -> None:
        await client.aclose()
        await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        if store is not None:
            store.close()
        for handle in opened:
            handle.close()

    return service, close


def bridge(common: CommonSettings, config: SearchSettings) -> AsyncBridge[SearchService]:
    """The service of each worker process, built on its loop at the first call (common/bridge.py)."""
    return AsyncBridge("search", lambda: build_service(common, config))
