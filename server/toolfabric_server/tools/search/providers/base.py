"""What a search provider does; each kind of search it cannot do raises ProviderUnsupported."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from toolfabric_server.index.results import ImageResult, WebResult
from toolfabric_server.tools.search.errors import ProviderUnsupported


@dataclass(frozen=True)
class Answer:
    results: list[WebResult] | list[ImageResult]
    cost_units: float = 0.0


@dataclass(frozen=True)
class ImageQuery:
    """An image to look up: its blob reference (its content hash), bytes and public URL on demand."""

    ref: str
    load: Callable[[], Awaitable[bytes]]
    public_url: Callable[[], str]


class Provider:
    name = "provider"

    async def scope(self, query: str | None = None) -> str:
        """What besides the request identifies a result in the cache: for the local index, the state of
        the pages that can answer `query` (a text search), or of its images (`query` None)."""
        return self.name

    async def web(self, query: str, k: int) -> Answer:
        raise ProviderUnsupported(self.name, "has no web search")

    async def reverse_image(self, image: ImageQuery, k: int) -> Answer:
        raise ProviderUnsupported(self.name, "has no reverse image search")

    async def image_text(self, query: str, k: int) -> Answer:
        raise ProviderUnsupported(self.name, "has no image search by text")

    async def aclose(self) -> None:
        """Release what the provider holds."""
