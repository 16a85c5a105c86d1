"""What every local-index backend offers (embedded SQLite FTS5, Elasticsearch).

Backends store pages (BM25 over title and text), image fingerprints keyed by content, and
where each image appears (page URL, image URL, alt text/caption). Reverse image search is
shared: it loads the fingerprints once per index generation and matches in memory.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from services.index.documents import Page
from services.index.imagematch import FeatureIndex, Fingerprint
from services.index.results import ImageResult, WebResult

SNIPPET_CHARS = 240
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Dropped from queries (not from documents): they match nearly every page and cost the most.
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were what when "
    "where which who whom why with how did does do".split()
)


@dataclass(frozen=True)
class ImageOccurrence:
    content_hash: str
    page_url: str
    image_url: str
    title: str


def query_terms(query: str) -> list[str]:
    """Lower-cased word tokens, stopwords dropped unless nothing else is left, de-duplicated."""
    tokens = [t.lower() for t in _TOKEN.findall(query)]
    kept = [t for t in tokens if t not in STOPWORDS] or tokens
    return list(dict.fromkeys(kept))


def short_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


class SearchIndex(ABC):
    """A local index. Methods are blocking; async callers use `asyncio.to_thread`."""

    name = "index"

    def __init__(self) -> None:
        self._features: tuple[int, FeatureIndex] | None = None
        self._features_lock = threading.Lock()

    # --- storage, per backend -------------------------------------------------------------
    @abstractmethod
    def upsert_pages(self, pages: list[Page]) -> None:
        """Add or replace pages by URL (their text; image occurrences are separate)."""

    @abstractmethod
    def upsert_images(self, fingerprints: list[Fingerprint]) -> None:
        """Add image fingerprints by content hash (idempotent)."""

    @abstractmethod
    def set_occurrences(self, page_url: str, occurrences: list[ImageOccurrence]) -> None:
        """Replace the images recorded for `page_url`."""

    @abstractmethod
    def search_text(self, query: str, k: int) -> list[WebResult]:
        """BM25 over page titles and text; title matches weigh more."""

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
        """A number that changes on every write: cache keys and the feature cache use it."""

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
