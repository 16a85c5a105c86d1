"""The shared two-tier cache: normalized keys, tiers with provenance, modes, and single flight
(N identical concurrent requests → one provider call, also across processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from tests.search.conftest import MakeService
from tests.search.fake_providers import FakeSerper
from toolfabric_server.common.cache import Cache, CacheEntry, cache_key
from toolfabric_server.common.cache_store import SQLiteCacheStore
from toolfabric_server.common.errors import CacheMiss, ToolUnavailable
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.devstack.processes import source_roots
from toolfabric_server.tools.search.spec import TextSearchArgs


def test_keys_ignore_case_and_whitespace_but_not_provider_k_or_locale() -> None:
    base = cache_key("search.web", provider="serper:us:en", query="Eileen  Collins\n", k=5)
    assert base == cache_key("search.web", provider="serper:us:en", query=" eileen collins", k=5)
    assert base.startswith("search.web:")
    assert base != cache_key("search.web", provider="serper:us:en", query="eileen collins", k=10)
    assert base != cache_key("search.web", provider="serper:de:de", query="eileen collins", k=5)
    assert base != cache_key("search.web", provider="searxng", query="eileen collins", k=5)


class Counter:
    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls, self.delay_s, self.fail = 0, delay_s, fail

    async def __call__(self) -> CacheEntry:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ToolUnavailable("upstream: HTTP 503 after 3 attempts")
        return CacheEntry.now({"answer": self.calls}, "fakeprov", cost_units=2.0)


@pytest.fixture
async def aredis_client(redis_server, redis_client: redis.Redis) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _cache(client: aredis.Redis, tmp_path: Path, mode: str = "live", **kw) -> Cache:  # type: ignore[no-untyped-def]
    return Cache(client, SQLiteCacheStore(tmp_path / "cache.sqlite3"), mode, **kw)  # type: ignore[arg-type]


async def test_live_mode_reads_hot_then_persistent_and_keeps_provenance(aredis_client: aredis.Redis,
                                                                        tmp_path: Path) -> None:
    cache, fetch = _cache(aredis_client, tmp_path), Counter()
    key = cache_key("t", q="x")
    first = await cache.get_or_fetch(key, fetch)
    hot = await cache.get_or_fetch(key, fetch)
    await aredis_client.flushdb()  # the hot tier is gone (Redis restart, eviction)
    persistent = await cache.get_or_fetch(key, fetch)
    again_hot = await cache.get_or_fetch(key, fetch)
    assert [first.source, hot.source, persistent.source, again_hot.source] == ["provider", "hot", "persistent", "hot"]
    assert fetch.calls == 1
    for lookup in (hot, persistent):
        assert lookup.entry == first.entry  # value, provider, fetched_at, cost units all kept
    assert first.entry.provider == "fakeprov" and first.entry.cost_units == 2.0
    assert abs(first.entry.fetched_at - time.time()) < 5


async def test_expired_persistent_entries_are_refetched_in_live_mode(aredis_client: aredis.Redis,
                                                                     tmp_path: Path) -> None:
    cache, fetch = _cache(aredis_client, tmp_path, persistent_ttl_s=1, hot_ttl_s=1), Counter()
    key = cache_key("t", q="ttl")
    await cache.get_or_fetch(key, fetch)
    await aredis_client.flushdb()
    cache.store.put(key, {"value": "old", "provider": "p", "fetched_at": 1.0, "cost_units": 0},  # type: ignore[union-attr]
                    expires_at=time.time() - 1)
    got = await cache.get_or_fetch(key, fetch)
    assert got.source == "provider" and fetch.calls == 2


async def test_replay_mode_serves_recordings_even_expired_and_a_miss_is_a_clear_error(
    aredis_client: aredis.Redis, tmp_path: Path
) -> None:
    recorder, fetch = _cache(aredis_client, tmp_path, mode="record"), Counter()
    key = cache_key("t", q="recorded")
    await recorder.get_or_fetch(key, fetch)
    await aredis_client.flushdb()
    recorder.store.put(key, {"value": {"answer": 1}, "provider": "fakeprov", "fetched_at": 1.0,  # type: ignore[union-attr]
                             "cost_units": 2.0}, expires_at=time.time() - 3600)
    replay = _cache(aredis_client, tmp_path, mode="replay")
    got = await replay.get_or_fetch(key, fetch)
    assert got.entry.value == {"answer": 1} and got.source == "persistent" and fetch.calls == 1
    with pytest.raises(CacheMiss) as missed:
        await replay.get_or_fetch(cache_key("t", q="never"), fetch, describe="text_search 'never' via fakeprov")
    assert str(missed.value) == ("replay mode: nothing recorded for text_search 'never' via fakeprov; record it "
                                 "first (TOOLFABRIC_CACHE_MODE=record or live)")
    assert fetch.calls == 1


async def test_record_mode_always_calls_the_provider_and_stores_the_newest(aredis_client: aredis.Redis,
                                                                          tmp_path: Path) -> None:
    cache, fetch = _cache(aredis_client, tmp_path, mode="record"), Counter()
    key = cache_key("t", q="rec")
    await cache.get_or_fetch(key, fetch)
    second = await cache.get_or_fetch(key, fetch)
    assert fetch.calls == 2 and second.source == "provider"
    live = await _cache(aredis_client, tmp_path).get_or_fetch(key, fetch)
    assert live.entry.value == {"answer": 2} and live.source == "hot"


async def test_off_mode_stores_nothing(aredis_client: aredis.Redis, tmp_path: Path) -> None:
    cache, fetch = _cache(aredis_client, tmp_path, mode="off"), Counter()
    key = cache_key("t", q="off")
    await cache.get_or_fetch(key, fetch)
    await cache.get_or_fetch(key, fetch)
    assert fetch.calls == 2 and await aredis_client.dbsize() == 0
    assert cache.store.get(key) is None  # type: ignore[union-attr]


async def test_fifty_concurrent_identical_requests_share_one_call_and_its_error(
    redis_server, aredis_client: aredis.Redis, tmp_path: Path
) -> None:
    # Separate Cache objects on separate connections, as separate workers would have.
    clients = [aredis.Redis.from_url(redis_server.url) for _ in range(5)]
    try:
        caches = [_cache(clients[i % 5], tmp_path) for i in range(50)]
        fetch = Counter(delay_s=0.2)
        lookups = await asyncio.gather(*(c.get_or_fetch(cache_key("t", q="same"), fetch) for c in caches))
        assert fetch.calls == 1
        assert sorted(lu.source for lu in lookups) == ["provider"] + ["shared"] * 49
        assert all(lu.entry == lookups[0].entry for lu in lookups)
        failing = Counter(delay_s=0.2, fail=True)
        outcomes = await asyncio.gather(*(c.get_or_fetch(cache_key("t", q="bad"), failing) for c in caches),
                                        return_exceptions=True)
        assert failing.calls == 1
        assert all(isinstance(o, ToolUnavailable) and str(o) == "upstream: HTTP 503 after 3 attempts" for o in outcomes)
    finally:
        for c in clients:
            await c.aclose()


async def test_fifty_concurrent_identical_text_searches_make_one_provider_call(make_service: MakeService) -> None:
    with FakeSerper().running() as serper:
        serper.delay_s = 0.3
        services = [await make_service(["serper"], serper_base_url=serper.url) for _ in range(3)]
        args = TextSearchArgs(queries=["Who commanded STS-93?"])
        results = await asyncio.gather(*(services[i % 3].text_search(args, ToolContext()) for i in range(50)))
        assert serper.calls("/search") == 1
    assert len({r.text for r in results}) == 1
    assert sum(r.usage["provider_calls"] for r in results) == 1
    assert sum(r.usage["single_flight_shared"] for r in results) == 49
    assert sum(r.usage["cost_units"] for r in results) == 1


_WORKER = """
import asyncio, json, sys
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.tools.search.settings import SearchSettings
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.tools.search.runtime import build_service
from toolfabric_server.tools.search.spec import TextSearchArgs

async def main():
    common = CommonSettings(redis_url=sys.argv[1], data_dir=sys.argv[2], cache_mode="live")
    config = SearchSettings(providers=["serper"], serper_base_url=sys.argv[3], serper_api_key="test-serper-key",
                            provider_rate_per_s=1000, provider_burst=1000)
    service, close = await build_service(common, config)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    args = TextSearchArgs(queries=["single flight across processes"])
    results = await asyncio.gather(*(service.text_search(args, ToolContext()) for _ in range(25)))
    print(json.dumps([r.usage for r in results]), flush=True)
    await close()

asyncio.run(main())
"""


def test_single_flight_holds_across_worker_processes(redis_server, redis_client: redis.Redis,
                                                     tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    with FakeSerper().running() as serper:
        serper.delay_s = 0.5
        procs = [subprocess.Popen([sys.executable, "-c", _WORKER, redis_server.url, str(tmp_path), serper.url],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(source_roots())}) for _ in range(2)]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            usages = [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert serper.calls("/search") == 1
    flat = [u for per_process in usages for u in per_process]
    assert len(flat) == 50 and sum(u["provider_calls"] for u in flat) == 1


async def test_replay_mode_answers_text_search_from_recordings_without_calling_providers(
    make_service: MakeService, fake_serper: FakeSerper
) -> None:
    recorder = await make_service(["serper"], cache_mode="record", serper_base_url=fake_serper.url)
    args = TextSearchArgs(queries=["Columbia STS-93"])
    recorded = await recorder.text_search(args, ToolContext())
    replay = await make_service(["serper"], cache_mode="replay", serper_base_url=fake_serper.url)
    replayed = await replay.text_search(TextSearchArgs(queries=["columbia   sts-93", "not recorded"]), ToolContext())
    first, missing = json.loads(replayed.text)
    assert first["results"] == json.loads(recorded.text)[0]["results"]
    assert missing == {"query": "not recorded", "error": "replay mode: nothing recorded for text_search "
                                                         "'not recorded' (providers: serper)"}
    assert fake_serper.calls() == 1 and replayed.usage["cache_hit_hot"] == 1 and replayed.usage["provider_calls"] == 0
