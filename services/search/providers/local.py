"""The local index as a provider: offline, private, free."""

from __future__ import annotations

import asyncio

from services.index import SearchIndex
from services.index.imagematch import QUERY_FEATURES, fingerprint
from services.search.providers.base import Answer, ImageQuery, Provider


class LocalProvider(Provider):
    name = "local"

    def __init__(self, index: SearchIndex, max_pixels: int) -> None:
        self.index = index
        self.max_pixels = max_pixels

    async def scope(self) -> str:
        # Cached answers must not outlive the index they came from.
        return f"local@{await asyncio.to_thread(self.index.generation)}"

    async def web(self, query: str, k: int) -> Answer:
        return Answer(await asyncio.to_thread(self.index.search_text, query, k))

    async def reverse_image(self, image: ImageQuery, k: int) -> Answer:
        data = await image.load()

        def match() -> Answer:
            return Answer(self.index.search_image(fingerprint(data, self.max_pixels, QUERY_FEATURES), k))

        return await asyncio.to_thread(match)

    async def image_text(self, query: str, k: int) -> Answer:
        return Answer(await asyncio.to_thread(self.index.search_image_text, query, k))
