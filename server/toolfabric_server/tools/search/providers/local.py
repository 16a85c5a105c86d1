"""The local index as a provider: offline, private, free."""

from __future__ import annotations

import asyncio

from toolfabric_server.index import SearchIndex
from toolfabric_server.index.imagematch import QUERY_FEATURES, fingerprint
from toolfabric_server.tools.search.providers.base import Answer, ImageQuery, Provider


class LocalProvider(Provider):
    name = "local"

    def __init__(self, index: SearchIndex, max_pixels: int, max_pixels_per_byte: int) -> None:
        self.index = index
        self.max_pixels = max_pixels
        self.max_pixels_per_byte = max_pixels_per_byte

    async def scope(self, query: str | None = None) -> str:
        # Cached answers must not outlive what they came from, and only that: a page change drops the
        # answers of queries sharing a term with it, an image change those of image searches.
        if query is None:
            return f"local@images:{await asyncio.to_thread(self.index.image_scope)}"
        return f"local@text:{await asyncio.to_thread(self.index.text_scope, query)}"

    async def web(self, query: str, k: int) -> Answer:
        return Answer(await asyncio.to_thread(self.index.search_text, query, k))

    async def reverse_image(self, image: ImageQuery, k: int) -> Answer:
        data = await image.load()

        def match() -> Answer:
            query = fingerprint(data, self.max_pixels, QUERY_FEATURES, max_pixels_per_byte=self.max_pixels_per_byte)
            return Answer(self.index.search_image(query, k))

        return await asyncio.to_thread(match)

    async def image_text(self, query: str, k: int) -> Answer:
        return Answer(await asyncio.to_thread(self.index.search_image_text, query, k))
