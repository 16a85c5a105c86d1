"""The fetch worker's Celery task: `toolfabric.fetch.call` → web_visit.

web_visit's collaborators (the Redis client, page cache, per-host limits, robots, summarizer) are built
once per worker process on its async bridge (services/common/bridge.py), where every call runs.
"""

from __future__ import annotations

import os

import redis.asyncio as aredis
from celery import Celery, Task

from services.common import redis_clients, settings
from services.common.blobs import AsyncBlobStore
from services.common.bridge import AsyncBridge, Closer
from services.common.bundle import open_bundle
from services.common.cache import Cache
from services.common.cache_store import PersistentStore, open_store
from services.common.tools import ToolContext, ToolResult
from services.common.worker import register_service
from services.fetch.indexing import LocalIndexSink
from services.fetch.spec import TOOLS, WebVisitArgs
from services.fetch.summarize import ModelSummarizer
from services.fetch.visit import Services, web_visit
from services.model import settings as model_settings
from services.web import settings as web_settings
from services.web.hostlimits import HostLimits
from services.web.robots import Robots

_store: tuple[int, PersistentStore] | None = None


def persistent_store() -> PersistentStore:
    """This process's persistent cache tier (re-opened after a fork)."""
    global _store
    if _store is None or _store[0] != os.getpid():
        common = settings.common()
        _store = (os.getpid(), open_store(common.elasticsearch_url, common.data_dir, common.elasticsearch_prefix))
    return _store[1]


def build_services(client: aredis.Redis) -> Services:
    """web_visit's collaborators, as the settings ask for them."""
    common, fetch = settings.common(), web_settings.fetch()
    cache = None
    if common.cache_mode != "off" and fetch.page_cache_ttl_s > 0:
        cache = Cache(client, persistent_store(), common.cache_mode, hot_ttl_s=fetch.page_cache_ttl_s,
                      persistent_ttl_s=common.cache_persistent_ttl_s, wait_s=fetch.total_timeout_s * 2,
                      lease_s=common.worker_lease_ttl_s, bundle=open_bundle(common.cache_bundle))
    summarizer = None
    if fetch.summarizer_model:
        summarizer = ModelSummarizer(fetch.summarizer_model, model_settings.model().triton_url,
                                     fetch.summarizer_timeout_s)
    return Services(
        settings=fetch,
        blobs=AsyncBlobStore(client, common.blob_ttl_s),
        cache=cache,
        gate=HostLimits(client, fetch.per_host_rate_per_s, fetch.per_host_burst, fetch.per_host_concurrency,
                        max_wait_s=fetch.total_timeout_s, lease_s=common.worker_lease_ttl_s),
        robots=Robots(client, fetch.user_agent, fetch.robots_ttl_s) if fetch.respect_robots else None,
        summarizer=summarizer,
        sink=LocalIndexSink() if fetch.index_fetched_pages else None,
        max_image_bytes=common.max_image_bytes,
        max_image_pixels=common.max_image_pixels,
    )


async def _build() -> tuple[Services, Closer]:
    client = redis_clients.async_client("cache")  # blobs, page cache, per-host limits, robots
    return build_services(client), client.aclose  # type: ignore[attr-defined]  # (types-redis predates aclose)


BRIDGE: AsyncBridge[Services] = AsyncBridge("fetch", _build)


def handle_web_visit(args: WebVisitArgs, ctx: ToolContext) -> ToolResult:
    return BRIDGE.run(lambda services: web_visit(args, ctx, services))


def register(app: Celery) -> Task:
    """`toolfabric.fetch.call` on the worker's app."""
    return register_service(app, "fetch", TOOLS, {"web_visit": handle_web_visit})
