"""Settings of the search service (TOOLFABRIC_SEARCH_*).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class SearchSettings(BaseSettings):
    """text_search / image_search providers, the local index and rate limits."""

    model_config = config("TOOLFABRIC_SEARCH_")

    # Tried in order; an outage or error falls through to the next one.
    providers: list[Literal["serper", "searxng", "local"]] = Field(default=["local"])
    serper_api_key: SecretStr | None = None
    serper_base_url: str = "https://google.serper.dev"
    searxng_url: str | None = None
    results_per_query: int = Field(default=5, ge=1, le=20)
    max_queries_per_call: int = Field(default=8, ge=1)
    max_query_chars: int = Field(default=500, ge=1)
    provider_timeout_s: float = Field(default=10.0, gt=0)
    provider_retries: int = Field(default=2, ge=0)
    # Token bucket per provider, shared by all workers through Redis.
    provider_rate_per_s: float = Field(default=5.0, gt=0)
    provider_burst: int = Field(default=10, ge=1)
    # Longest wait for the shared bucket before the provider counts as unavailable for this query.
    provider_max_rate_wait_s: float = Field(default=5.0, ge=0)
    # Retries of 429/5xx/connection failures: full-jitter backoff from this base, capped.
    provider_backoff_s: float = Field(default=0.5, ge=0)
    provider_backoff_max_s: float = Field(default=4.0, ge=0)
    # Locale sent to the providers (and part of every cache key).
    serper_gl: str = "us"
    serper_hl: str = "en"
    searxng_language: str = "en"
    max_images_per_call: int = Field(default=4, ge=1)
