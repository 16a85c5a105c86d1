"""The fetch worker's Celery task: `toolfabric.fetch.call` → web_visit.

web_visit's collaborators (the Redis client, page cache, per-host limits, robots, summarizer) are built
once per worker process on its async bridge (common/bridge.py), where every call runs.
"""

from __future__ import annotations

import redis.asyncio as aredis
from celery import Celery, Task

from toolfabric_server.common import redis_clients
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.bridge import AsyncBridge, Closer
from toolfabric_server.common.bundle import open_bundle
from toolfabric_server.common.cache import Cache
from toolfabric_server.common.cache_store import PersistentStore, open_store
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.common.worker import Handler, register_service
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.tools.fetch.indexing import LocalIndexSink
from toolfabric_server.tools.fetch.spec import TOOLS, WebVisitArgs
from toolfabric_server.tools.fetch.summarize import ModelSummarizer
from toolfabric_server.tools.fetch.visit import Services, web_visit
from toolfabric_server.web.hostlimits import HostLimits
from toolfabric_server.web.robots import Robots
from toolfabric_server.web.settings import FetchSettings


def build_services(client: aredis.Redis, common: CommonSettings, fetch: FetchSettings, triton_url: str,
                   store: PersistentStore | None, sink: LocalIndexSink | None) -> Services:
    """web_visit's collaborators, as the settings ask for them (`store`: the persistent cache tier; `sink`:
    where fetched pages are indexed, when the settings ask for that)."""
    cache = None
    if store is not None:
        cache = Cache(client, store, common.cache_mode, hot_ttl_s=fetch.page_cache_ttl_s,
                      persistent_ttl_s=common.cache_persistent_ttl_s, wait_s=fetch.total_timeout_s * 2,
                      lease_s=common.worker_lease_ttl_s, bundle=open_bundle(common.cache_bundle))
    summarizer = None
    if fetch.summarizer_model:
        summarizer = ModelSummarizer(fetch.summarizer_model, triton_url, fetch.summarizer_timeout_s)
    return Services(
        settings=fetch,
        blobs=AsyncBlobStore(client, common.blob_ttl_s),
        cache=cache,
        gate=HostLimits(client, fetch.per_host_rate_per_s, fetch.per_host_burst, fetch.per_host_concurrency,
                        max_wait_s=fetch.total_timeout_s, lease_s=common.worker_lease_ttl_s),
        robots=Robots(client, fetch.user_agent, fetch.robots_ttl_s) if fetch.respect_robots else None,
        summarizer=summarizer,
        sink=sink,
        max_image_bytes=common.max_image_bytes,
        max_image_pixels=common.max_image_pixels,
        max_image_pixels_per_byte=common.max_image_pixels_per_byte,
    )


def bridge(common: CommonSettings, fetch: FetchSettings, triton_url: str) -> AsyncBridge[Services]:
    """web_visit's services, built once per worker process on its loop (the Redis client, the persistent cache
    tier opened there, after the fork)."""

    async def build() -> tuple[Services, Closer]:
        client = redis_clients.async_client("cache", common)  # blobs, page cache, per-host limits, robots
        cached = common.cache_mode != "off" and fetch.page_cache_ttl_s > 0
        store = open_store(common.elasticsearch_url, common.data_dir, common.elasticsearch_prefix) if cached else None
        sink = LocalIndexSink(common) if fetch.index_fetched_pages else None

        async def close() -> None:
            await client.aclose()  # type: ignore[attr-defined]  # (types-redis predates aclose)
            for opened in (store, sink):
                if opened is not None:
                    opened.close()

        return build_services(client, common, fetch, triton_url, store, sink), close

    return AsyncBridge("fetch", build)


def handlers(common: CommonSettings, fetch: FetchSettings, triton_url: str) -> dict[str, Handler]:
    services = bridge(common, fetch, triton_url)

    def handle_web_visit(args: WebVisitArgs, ctx: ToolContext) -> ToolResult:
        return services.run(lambda built: web_visit(args, ctx, built))

    return {"web_visit": handle_web_visit}


def register(app: Celery, common: CommonSettings) -> Task:
    """`toolfabric.fetch.call` on the worker's app; the fetch settings (and the summarizer's model address) are
    read here, at the worker's start."""
    return register_service(app, "fetch", TOOLS, handlers(common, FetchSettings(), ModelSettings().triton_url), common)
