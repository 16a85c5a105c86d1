"""Fixtures of the search tests: the demo corpus indexed once, services wired to real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.search.fake_providers import SERPER_KEY, FakeSearxng, FakeSerper
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.index.indexer import IndexingSettings, index_paths
from toolfabric_server.index.sqlite import SQLiteIndex
from toolfabric_server.tools.search.runtime import build_service
from toolfabric_server.tools.search.service import SearchService
from toolfabric_server.tools.search.settings import SearchSettings

DEMO_BASE = "http://demo.test/site/"

MakeService = Callable[..., Awaitable[SearchService]]


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[SQLiteIndex]:
    """The demo site in an embedded index, recorded under DEMO_BASE (read-only for tests)."""
    index = SQLiteIndex(tmp_path_factory.mktemp("demo-index") / "index.sqlite3")
    report = index_paths([str(demo_dir / "site")], base_url=DEMO_BASE, progress=False, index=index,
                         settings=IndexingSettings.read())
    assert report.pages == 8 and report.images == 4, report.summary()
    yield index
    index.close()


@pytest.fixture
def fake_serper() -> Iterator[FakeSerper]:
    with FakeSerper().running() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def fake_searxng() -> Iterator[FakeSearxng]:
    with FakeSearxng().running() as server:
        yield server  # type: ignore[misc]


def settings_for(redis_url: str, data_dir: Path, cache_mode: str = "live",
                 **search: Any) -> tuple[CommonSettings, SearchSettings]:
    common = CommonSettings(redis_url=redis_url, data_dir=str(data_dir), cache_mode=cache_mode,  # type: ignore[arg-type]
                            elasticsearch_url=None, cache_single_flight_wait_s=20)
    defaults: dict[str, Any] = {"serper_api_key": SERPER_KEY, "provider_timeout_s": 1.0, "provider_retries": 2,
                                "provider_backoff_s": 0.01, "provider_backoff_max_s": 0.05,
                                "provider_rate_per_s": 1000.0, "provider_burst": 1000}
    return common, SearchSettings(**{**defaults, **search})


@pytest.fixture
async def make_service(redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path,
                       demo_index: SQLiteIndex) -> AsyncIterator[MakeService]:
    """Build a SearchService on a flushed Redis; closed after the test."""
    closers = []

    async def make(providers: list[str] | None = None, cache_mode: str = "live", **search: Any) -> SearchService:
        common, config = settings_for(redis_server.url, tmp_path / "data", cache_mode,
                                      providers=providers or ["local"], **search)
        service, close = await build_service(common, config, index=demo_index)
        closers.append(close)
        return service

    yield make
    for close in closers:
        await close()
