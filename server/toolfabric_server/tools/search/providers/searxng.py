"""SearXNG's JSON API (self-hosted metasearch): GET {url}/search?q=…&format=json.

Replies carry `results` with `url`, `title`, `content` (and `img_src` for the images
category). An instance without `json` in `search.formats` answers 403; its limiter answers 429.
SearXNG has no reverse image search.
"""

from __future__ import annotations

from typing import Any

from toolfabric_server.common.ratelimit import TokenBucket
from toolfabric_server.index.results import ImageResult, WebResult
from toolfabric_server.tools.search.errors import ProviderBadResponse, ProviderNotConfigured
from toolfabric_server.tools.search.http import ProviderHTTP
from toolfabric_server.tools.search.providers.base import Answer, Provider


class SearxngProvider(Provider):
    name = "searxng"

    def __init__(self, http: ProviderHTTP, bucket: TokenBucket, url: str | None, language: str = "en") -> None:
        self.http, self.bucket = http, bucket
        self.url = url.rstrip("/") if url else None
        self.language = language

    async def scope(self, query: str | None = None) -> str:
        return f"searxng:{self.url}:{self.language}"

    async def _search(self, query: str, category: str) -> list[dict[str, Any]]:
        if not self.url:
            raise ProviderNotConfigured(self.name, "no instance URL (set TOOLFABRIC_SEARCH_SEARXNG_URL)")
        body = await self.http.request_json(
            self.name, self.bucket, "GET", f"{self.url}/search",
            params={"q": query, "format": "json", "categories": category, "language": self.language, "pageno": 1},
            hints={403: " (the instance must allow the json format: search.formats in settings.yml)"},
        )
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ProviderBadResponse(self.name, "reply has no 'results' list")
        return [r for r in body["results"] if isinstance(r, dict)]

    async def web(self, query: str, k: int) -> Answer:
        items = await self._search(query, "general")
        return Answer([
            WebResult(str(i.get("title", "")), str(i["url"]), str(i.get("content") or ""))
            for i in items if i.get("url")
        ][:k])

    async def image_text(self, query: str, k: int) -> Answer:
        items = await self._search(query, "images")
        return Answer([
            ImageResult(str(i.get("title", "")), str(i["url"]), str(i.get("img_src") or i.get("thumbnail_src") or ""))
            for i in items if i.get("url")
        ][:k])
