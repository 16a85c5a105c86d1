"""The gateway's Celery executor on a test Redis, for tests that call tool workers without a gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aredis

from toolfabric_server.common import settings
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.gateway.celery_executor import CeleryToolExecutor


@contextlib.asynccontextmanager
async def celery_executor(redis_url: str) -> AsyncIterator[CeleryToolExecutor]:
    client = aredis.Redis.from_url(redis_url)
    app = make_celery(settings.common(), settings.worker())
    executor = CeleryToolExecutor(app, client)
    await executor.start()
    try:
        yield executor
    finally:
        await executor.close()
        app.close()
        await client.aclose()
