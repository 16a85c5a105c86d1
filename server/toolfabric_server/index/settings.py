"""Settings of `toolfabric index` (the local index's files and crawl limits).

They keep the search service's prefix (TOOLFABRIC_SEARCH_INDEX_EXCLUDE, TOOLFABRIC_SEARCH_CRAWL_MAX_PAGES, ...):
deployments set them under that name, and the index library sits below the search service.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class IndexSettings(BaseSettings):
    """What `toolfabric index` leaves out, when two pages are one, and how far a crawl goes."""

    model_config = config("TOOLFABRIC_SEARCH_")

    # `toolfabric index DIR`: glob patterns (on paths relative to DIR, and on crawled URL paths) left out by
    # default: Sphinx's reST twins and build files, hidden folders, generated index/search pages, artefacts.
    index_exclude: list[str] = Field(default_factory=lambda: [
        "_sources/*", "_static/*", "_modules/*", ".*", "__pycache__/*", "node_modules/*",
        "genindex.html", "genindex-*.html", "search.html", "py-modindex.html", "robots.txt", "*.inv", "*.map",
        "*.min.js"])
    # Two pages whose 64-bit SimHash differ in at most this many bits are one page (near duplicates).
    index_near_duplicate_bits: int = Field(default=3, ge=0, le=16)
    # `toolfabric index URL --crawl`: same-site pages breadth-first within these limits.
    crawl_max_pages: int = Field(default=500, ge=1)
    crawl_max_depth: int = Field(default=5, ge=0)
    crawl_rate_per_s: float = Field(default=2.0, gt=0)
