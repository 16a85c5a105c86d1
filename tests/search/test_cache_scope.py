"""The local index's cached answers stay warm: re-reading an unchanged page drops nothing, and a
changed page drops only the answers of queries sharing a word with it (real Redis, real index)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.search.conftest import DEMO_BASE, settings_for
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.index.indexer import IndexingSettings, index_document, index_paths
from toolfabric_server.index.sqlite import SQLiteIndex
from toolfabric_server.tools.search.runtime import build_service
from toolfabric_server.tools.search.service import SearchService
from toolfabric_server.tools.search.spec import TextSearchArgs


@pytest.fixture
async def service_and_index(redis_server: RedisServer, redis_client, tmp_path: Path,  # type: ignore[no-untyped-def]
                            demo_dir: Path) -> AsyncIterator[tuple[SearchService, SQLiteIndex]]:
    index = SQLiteIndex(tmp_path / "index.sqlite3")
    index_paths([str(demo_dir / "site")], base_url=DEMO_BASE, progress=False, index=index,
                settings=IndexingSettings.read())
    common, config = settings_for(redis_server.url, tmp_path / "data", providers=["local"])
    service, close = await build_service(common, config, index=index)
    yield service, index
    await close()
    index.close()


async def _hits(service: SearchService, *queries: str) -> list[bool]:
    out = []
    for q in queries:
        result = await service.text_search(TextSearchArgs(queries=[q]), ToolContext())
        out.append(result.usage["cache_hit_hot"] == 1)
    return out


async def test_rereading_an_unchanged_page_keeps_every_cached_answer(
        service_and_index: tuple[SearchService, SQLiteIndex], demo_dir: Path) -> None:
    service, index = service_and_index
    queries = ("Chandra X-ray Observatory", "coffee beans", "Eileen Collins")
    assert await _hits(service, *queries) == [False, False, False]
    # What web_visit does with every page it reads: the same bytes again.
    index_document(DEMO_BASE + "chandra.html", (demo_dir / "site" / "chandra.html").read_bytes(), "text/html",
                   index=index, max_pixels=40_000_000)
    assert await _hits(service, *queries) == [True, True, True]


async def test_a_changed_page_drops_only_the_answers_it_can_change(
        service_and_index: tuple[SearchService, SQLiteIndex]) -> None:
    service, index = service_and_index
    assert await _hits(service, "Chandra X-ray Observatory", "coffee beans") == [False, False]
    index_document(DEMO_BASE + "chandra.html", b"<html><head><title>Chandra X-ray Observatory</title></head>"
                   b"<body><p>Launched on STS-93 in July 1999; rebuilt page.</p></body></html>", "text/html",
                   index=index, max_pixels=40_000_000)
    assert await _hits(service, "Chandra X-ray Observatory", "coffee beans") == [False, True]
    results = await service.text_search(TextSearchArgs(queries=["rebuilt page"]), ToolContext())
    assert results.data[0]["results"][0]["url"] == DEMO_BASE + "chandra.html"
