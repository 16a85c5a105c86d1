"""Optional robots.txt respect (TOOLFABRIC_FETCH_RESPECT_ROBOTS), cached in Redis for all workers.

Follows RFC 9309: a missing robots.txt (4xx) allows everything; a server error or an
unreachable host disallows everything until the cached answer expires. robots.txt itself is
fetched through the same guarded fetcher as the page.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.robotparser import RobotFileParser

import httpx
import redis.asyncio as aredis

from toolfabric_server.web.decoding import HTML_TYPES, TEXT_TYPES
from toolfabric_server.web.errors import BlockedURL, FetchError, HostNotFound, HTTPStatusError, RobotsDisallowed
from toolfabric_server.web.fetcher import Fetcher

log = logging.getLogger(__name__)

_PREFIX = "toolfabric:fetch:robots:"
ALLOW_ALL = ""
DISALLOW_ALL = "User-agent: *\nDisallow: /\n"
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309 asks crawlers to read at least 500 KiB


class Robots:
    def __init__(self, redis: aredis.Redis, user_agent: str, ttl_s: int) -> None:
        self._redis = redis
        self._agent = user_agent.split("/")[0].split()[0]  # the product token, e.g. "toolfabric-fetch"
        self._ttl_s = ttl_s
        # One robots.txt download per origin at a time in this process (a call visits URLs concurrently).
        self._inflight: dict[str, asyncio.Task[str]] = {}

    async def check(self, fetcher: Fetcher, url: str) -> None:
        parsed = httpx.URL(url)
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
        rules = await self._rules(fetcher, origin)
        if not allows(rules, self._agent, url):
            raise RobotsDisallowed(f"{origin}/robots.txt does not allow {self._agent} to fetch {url}")

    async def _rules(self, fetcher: Fetcher, origin: str) -> str:
        task = self._inflight.get(origin)
        if task is None:
            task = asyncio.ensure_future(self._load(fetcher, origin))
            self._inflight[origin] = task
            task.add_done_callback(lambda _: self._inflight.pop(origin, None))
        return await asyncio.shield(task)

    async def _load(self, fetcher: Fetcher, origin: str) -> str:
        key = _PREFIX + origin
        cached = await self._redis.get(key)
        if cached is not None:
            return cached.decode("utf-8", "replace") if isinstance(cached, bytes) else str(cached)
        rules = await download_rules(fetcher, origin)
        await self._redis.set(key, rules.encode(), ex=self._ttl_s)
        return rules


async def download_rules(fetcher: Fetcher, origin: str) -> str:
    """`origin`'s robots.txt rules by RFC 9309 (4xx: allow all; 5xx or unreachable: disallow all)."""
    try:
        fetched = await fetcher.fetch(origin + "/robots.txt", TEXT_TYPES | HTML_TYPES, MAX_ROBOTS_BYTES)
        return fetched.body.decode("utf-8", "replace") if fetched.media_type in TEXT_TYPES else ALLOW_ALL
    except HTTPStatusError as exc:
        return ALLOW_ALL if 400 <= exc.status < 500 else DISALLOW_ALL
    except (BlockedURL, HostNotFound):
        raise  # the page itself is refused or unknown: say that, not "robots"
    except FetchError as exc:
        log.info("robots.txt of %s unreachable (%s): treating as disallow-all", origin, exc)
        return DISALLOW_ALL


def allows(rules: str, user_agent: str, url: str) -> bool:
    parser = RobotFileParser()
    parser.parse(rules.splitlines())
    return parser.can_fetch(user_agent.split("/")[0].split()[0], url)
