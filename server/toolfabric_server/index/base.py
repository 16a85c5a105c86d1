"""What every local-index backend offers (embedded SQLite FTS5, Elasticsearch).

Backends store pages (BM25 over title and text), image fingerprints keyed by content, and
where each image appears (page URL, image URL, alt text/caption). Reverse image search is
shared: it loads the fingerprints once per index generation and matches in memory.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from toolfabric_server.index.documents import Page
from toolfabric_server.index.imagematch import FeatureIndex, Fingerprint
from toolfabric_server.index.results import ImageResult, WebResult


@dataclass(frozen=True)
class ImageOccurrence:
    content_hash: str
    page_url: str
    image_url: str
    title: str


class SearchIndex(ABC):
    """A local index. Methods are blocking; async callers use `asyncio.to_thread`."""

    name = "index"

    def __init__(self) -> None:
        self._features: tuple[int, FeatureIndex] | None = None
        self._features_lock = threading.Lock()

    # --- storage, per backend -------------------------------------------------------------
    @abstractmethod
    def upsert_pages(self, pages: list[Page]) -> int:
        """Add or replace pages by URL (their text; image occurrences are separate); a page whose
        content is unchanged is left as it is. Returns how many pages were added or changed."""

    @abstractmethod
    def upsert_images(self, fingerprints: list[Fingerprint]) -> None:
        """Add image fingerprints by content hash (idempotent)."""

    @abstractmethod
    def set_occurrences(self, page_url: str, occurrences: list[ImageOccurrence]) -> None:
        """Replace the images recorded for `page_url`."""

    @abstractmethod
    def search_text(self, query: str, k: int) -> list[WebResult]:
        """Pages best matching `query`: BM25 over title, headings and body (weighted in that order), boosted
        where code identifiers appear whole and query terms appear close together."""

    @abstractmethod
    def search_image_text(self, query: str, k: int) -> list[ImageResult]:
        """BM25 over image alt texts/captions."""

    @abstractmethod
    def image_features(self) -> list[tuple[str, int, bytes]]:
        """Every (content_hash, phash, features blob)."""

    @abstractmethod
    def occurrences_of(self, content_hashes: list[str]) -> dict[str, list[ImageOccurrence]]:
        """Where each image content appears."""

    @abstractmethod
    def generation(self) -> int:
        """A number that changes on every write that changed something (the image feature cache uses it)."""

    def text_scope(self, query: str) -> str:
        """What identifies `search_text(query)`'s answer in the cache: it changes when a page holding one
        of the query's terms changes (precise invalidation), not on every write. Default: the generation."""
        return str(self.generation())

    def image_scope(self) -> str:
        """Likewise for image searches (reverse and by text): changes when images or placements change."""
        return str(self.generation())

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """pages, images, occurrences."""

    @abstractmethod
    def clear(self) -> None:
        """Remove everything (tests, re-indexing from scratch)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""

    # --- shared ---------------------------------------------------------------------------
    def search_image(self, query: Fingerprint, k: int) -> list[ImageResult]:
        """Pages showing the query image's content, best match first."""
        matches = self._feature_index().search(query, k)
        where = self.occurrences_of([m.content_hash for m in matches])
        results: list[ImageResult] = []
        seen: set[tuple[str, str]] = set()
        for m in matches:
            for occ in where.get(m.content_hash, []):
                if (occ.page_url, occ.image_url) not in seen:
                    seen.add((occ.page_url, occ.image_url))
                    results.append(ImageResult(occ.title, occ.page_url, occ.image_url))
        return results[:k]

    def _feature_index(self) -> FeatureIndex:
        gen = self.generation()
        with self._features_lock:
            if self._features is None or self._features[0] != gen:
                self._features = (gen, FeatureIndex(self.image_features()))
            return self._features[1]
