"""Settings of web_visit's fetcher (TOOLFABRIC_FETCH_*): the SSRF guard and fetcher live in web,
used by the fetch service, the indexer's crawler and the MCP client's HTTP transport.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class FetchSettings(BaseSettings):
    """web_visit: the SSRF-safe fetcher, extraction and summarisation."""

    model_config = config("TOOLFABRIC_FETCH_")

    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    total_timeout_s: float = Field(default=20.0, gt=0)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0)
    max_urls_per_call: int = Field(default=5, ge=1)
    allowed_ports: list[int] = Field(default_factory=lambda: [80, 443])
    # host or host:port entries allowed even though they resolve to private addresses (off by default).
    private_host_allowlist: list[str] = Field(default_factory=list)
    user_agent: str = "toolfabric-fetch/0.1 (+https://github.com/toolfabric)"
    respect_robots: bool = False
    per_host_concurrency: int = Field(default=4, ge=1)
    per_host_rate_per_s: float = Field(default=2.0, gt=0)
    per_host_burst: int = Field(default=4, ge=1)
    # Passages returned to the model for one page (roughly 4 characters a token).
    max_output_tokens: int = Field(default=1500, ge=100)
    # Triton model used to summarise long pages; extractive passages when unset.
    summarizer_model: str | None = None
    summarizer_timeout_s: float = Field(default=60.0, gt=0)
    # Images of a page pulled into the trajectory when web_visit is asked for them.
    max_images_per_page: int = Field(default=4, ge=0, le=16)
    # robots.txt answers are kept this long (shared by all workers, in Redis).
    robots_ttl_s: int = Field(default=3600, ge=1)
    # Extracted pages are cached this long in the hot tier; 0 = never cached.
    page_cache_ttl_s: int = Field(default=3600, ge=0)
    # Add every fetched page to the local search index, so offline search grows with use.
    index_fetched_pages: bool = True


@lru_cache(maxsize=1)
def fetch() -> FetchSettings:
    return FetchSettings()
