"""Serper (google.serper.dev): Google web search, image search and Lens, as R1V4 used.

POST {base}/search | /images | /lens with header X-API-KEY and a JSON body; replies carry
`organic` (web, lens) or `images` lists and the `credits` the call cost. A bad key is
answered 401/403 `{"message": "Unauthorized.", "statusCode": 403}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from toolfabric_server.common.ratelimit import TokenBucket
from toolfabric_server.index.results import ImageResult, WebResult
from toolfabric_server.tools.search.errors import ProviderBadResponse, ProviderNotConfigured
from toolfabric_server.tools.search.http import ProviderHTTP
from toolfabric_server.tools.search.providers.base import Answer, ImageQuery, Provider


def _items(provider: str, body: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise ProviderBadResponse(provider, f"reply is JSON but not an object (got {type(body).__name__})")
    items = body.get(field, [])
    if not isinstance(items, list):
        raise ProviderBadResponse(provider, f"reply field {field!r} is not a list")
    return [i for i in items if isinstance(i, dict)]


def _credits(body: dict[str, Any], default: float) -> float:
    value = body.get("credits", default)
    return float(value) if isinstance(value, int | float) else default


class SerperProvider(Provider):
    name = "serper"

    def __init__(self, http: ProviderHTTP, bucket: TokenBucket, base_url: str, api_key: SecretStr | None,
                 gl: str = "us", hl: str = "en") -> None:
        self.http, self.bucket = http, bucket
        self.base_url = base_url.rstrip("/")
        self.api_key, self.gl, self.hl = api_key, gl, hl

    async def scope(self, query: str | None = None) -> str:
        return f"serper:{self.gl}:{self.hl}"

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.api_key is None or not self.api_key.get_secret_value():
            raise ProviderNotConfigured(self.name, "no API key (set TOOLFABRIC_SEARCH_SERPER_API_KEY)")
        body = await self.http.request_json(
            self.name, self.bucket, "POST", f"{self.base_url}/{path}",
            json={**payload, "gl": self.gl, "hl": self.hl},
            headers={"X-API-KEY": self.api_key.get_secret_value()},
            auth_statuses=frozenset({401, 403}),
            hints={400: " (Serper answers 400 when the account is out of credits or the request is malformed)"},
        )
        if not isinstance(body, dict):
            raise ProviderBadResponse(self.name, f"reply is JSON but not an object (got {type(body).__name__})")
        return body

    async def web(self, query: str, k: int) -> Answer:
        body = await self._post("search", {"q": query, "num": k})
        results = [
            WebResult(str(i.get("title", "")), str(i["link"]), str(i.get("snippet", "")))
            for i in _items(self.name, body, "organic") if i.get("link")
        ]
        return Answer(results[:k], _credits(body, 1.0))

    async def image_text(self, query: str, k: int) -> Answer:
        body = await self._post("images", {"q": query, "num": k})
        results = [
            ImageResult(str(i.get("title", "")), str(i.get("link", "")), str(i["imageUrl"]))
            for i in _items(self.name, body, "images") if i.get("imageUrl")
        ]
        return Answer(results[:k], _credits(body, 1.0))

    async def reverse_image(self, image: ImageQuery, k: int) -> Answer:
        # Lens fetches the image itself, so it gets a signed, expiring URL to our blob endpoint.
        body = await self._post("lens", {"url": image.public_url()})
        results = [
            ImageResult(str(i.get("title", "")), str(i["link"]), str(i.get("imageUrl") or i.get("thumbnailUrl") or ""))
            for i in _items(self.name, body, "organic") if i.get("link")
        ]
        return Answer(results[:k], _credits(body, 1.0))
