"""A step service outside the gateway process (the MCP server on stdio): the same parts `serve` wires."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.settings import CommonSettings, WorkerSettings
from toolfabric_server.common.tools import Catalog
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.gateway.celery_executor import CeleryToolExecutor
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.connections import redis_pair
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.stepping.service import StepService
from toolfabric_server.gateway.stepping.settings import StepSettings
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.dialects import dialect_for
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.model.triton_client import TritonModel
from toolfabric_server.web.client import image_downloader
from toolfabric_server.web.settings import FetchSettings


@contextlib.asynccontextmanager
async def standalone(common: CommonSettings, worker: WorkerSettings, gw: GatewaySettings, model_settings: ModelSettings,
                     step: StepSettings, fetch: FetchSettings, tools: Catalog,
                     capture_content: bool = False) -> AsyncIterator[tuple[StepService, AsyncBlobStore]]:
    """The step service from the settings its process read at start; `capture_content`: TelemetrySettings'; `fetch`:
    the SSRF guard's, for image URLs."""
    client, cache = redis_pair(common, gw)
    blobs = AsyncBlobStore(cache, common.blob_ttl_s)
    executor = CeleryToolExecutor(make_celery(common, worker), client, calls_per_message=gw.calls_per_message,
                                  messages_in_flight=gw.batched_messages_in_flight)
    await executor.start()
    # Never asked for a step: the actions come from outside. The loop needs one for its signature only.
    model = TritonModel(model_settings.triton_url, model_settings.stream_idle_timeout_s)
    loop = AgentLoop(model, executor, blobs, tools,
                     lambda name: dialect_for(name, model_settings.dialects, model_settings.default_dialect), gw,
                     channels=ChannelTracker, capture_content=capture_content)
    validator = RequestValidator(gw, model_settings, common, blobs, image_downloader(fetch), tools)
    try:
        yield StepService(loop, validator, client, blobs, step, gw, model_settings.default_model), blobs
    finally:
        await executor.close()
        await model.close()
        await client.aclose()
        if cache is not client:
            await cache.aclose()
