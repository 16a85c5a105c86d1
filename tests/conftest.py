"""Fixtures shared by every test: real servers on free loopback ports, stopped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import settings
from services.common.redis_server import RedisServer


def clear_settings_cache() -> None:
    for name in ("common", "gateway", "model", "worker", "vision", "search", "fetch", "telemetry"):
        getattr(settings, name).cache_clear()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole session; its URL is exported as TOOLFABRIC_REDIS_URL."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    previous = os.environ.get("TOOLFABRIC_REDIS_URL")
    os.environ["TOOLFABRIC_REDIS_URL"] = server.url
    clear_settings_cache()
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("TOOLFABRIC_REDIS_URL", None)
    else:
        os.environ["TOOLFABRIC_REDIS_URL"] = previous
    clear_settings_cache()


@pytest.fixture
def redis_client(redis_server: RedisServer):  # type: ignore[no-untyped-def]
    """A client on a flushed database."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "toolfabric" / "demo"
