"""Per-host limits shared by all workers (Redis) and optional robots.txt respect."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio as aredis

from toolfabric_server.common.tools import ToolContext
from toolfabric_server.tools.fetch.spec import WebVisitArgs
from toolfabric_server.tools.fetch.visit import Services, web_visit
from toolfabric_server.web.errors import FetchTimeout
from toolfabric_server.web.hostlimits import HostLimits
from toolfabric_server.web.robots import Robots

from .conftest import settings_for
from .servers import Server, html, raw


@pytest.fixture
async def aredis_client(redis_client, redis_server):
    client = aredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_concurrency_per_host_is_capped_across_limiters(aredis_client) -> None:
    # two limiter objects = two workers sharing one Redis
    workers = [HostLimits(aredis_client, 1000, 100, concurrency=2, max_wait_s=5, lease_s=30) for _ in range(2)]
    running, peak = 0, 0

    async def fetch(limits: HostLimits) -> None:
        nonlocal running, peak
        async with limits.slot("example.org"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

    await asyncio.gather(*(fetch(workers[i % 2]) for i in range(8)))
    assert peak == 2
    assert await workers[0].in_use("example.org") == 0


async def test_rate_per_host_spaces_requests(aredis_client) -> None:
    limits = HostLimits(aredis_client, rate_per_s=20, burst=1, concurrency=10, max_wait_s=5, lease_s=30)
    started = time.monotonic()
    for _ in range(5):
        async with limits.slot("example.org"):
            pass
    assert time.monotonic() - started >= 4 / 20 - 0.02  # burst 1, then one every 50 ms


async def test_a_host_that_stays_busy_is_a_clear_timeout(aredis_client) -> None:
    limits = HostLimits(aredis_client, 1000, 100, concurrency=1, max_wait_s=0.3, lease_s=30)
    async with limits.slot("busy.example"):
        with pytest.raises(FetchTimeout, match=r"connections allowed to busy\.example"):
            async with limits.slot("busy.example"):
                pass


async def test_a_live_holder_keeps_its_slot_past_the_lease_ttl(aredis_client) -> None:
    # Renewed while held (a dead worker's slot expires: tests/fetch/test_leases_die_with_owner.py).
    limits = HostLimits(aredis_client, 1000, 100, concurrency=1, max_wait_s=1, lease_s=0.2)
    async with limits.slot("example.org"):
        with pytest.raises(FetchTimeout):
            async with limits.slot("example.org"):
                pass


async def test_robots_txt_is_respected_when_enabled(web: Server, aredis_client) -> None:
    web.routes["/robots.txt"] = raw(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
    web.routes["/private/x"] = html("<p>secret</p>")
    web.routes["/public"] = html("<html><body><p>public page</p></body></html>")
    services = Services(settings_for(web, respect_robots=True),
                        robots=Robots(aredis_client, "toolfabric-fetch/0.1", ttl_s=60))
    result = await web_visit(WebVisitArgs(urls=[web.url("/private/x"), web.url("/public")]), ToolContext(), services)
    private, public = json.loads(result.text)
    assert "robots.txt does not allow" in private["error"]
    assert "public page" in public["content"]
    assert web.requests.count("/robots.txt") == 1  # cached for every later check
    assert "/private/x" not in web.requests


async def test_missing_robots_txt_allows_everything(web: Server, aredis_client) -> None:
    web.routes["/page"] = html("<html><body><p>fine</p></body></html>")
    services = Services(settings_for(web), robots=Robots(aredis_client, "toolfabric-fetch/0.1", ttl_s=60))
    [entry] = json.loads((await web_visit(WebVisitArgs(urls=[web.url("/page")]), ToolContext(), services)).text)
    assert "fine" in entry["content"]
