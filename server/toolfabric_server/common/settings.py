"""Settings every process shares: where Redis is, blob and result lifetimes, image limits, the Celery
worker knobs and telemetry switches.

Each service owns its own settings module (toolfabric_server/<service>/settings.py, gateway/settings.py, ...), one
class per environment prefix, so a deployment (the k8s ConfigMap, `toolfabric up`) sets
`TOOLFABRIC_GATEWAY_PORT=…` and the gateway reads it. Secrets (API keys, signing keys) are `SecretStr` so
they never print. `config(prefix)` is the one model_config they all use.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_nested_delimiter="__")


class CommonSettings(BaseSettings):
    """Shared by all processes: where Redis is, blob and result lifetimes, image limits."""

    model_config = config("TOOLFABRIC_")

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Image blobs and the hot cache: a Redis of their own in production (LRU, bounded), so image traffic can
    # never fill the broker's and trajectories' Redis (AOF, noeviction). Empty: the same Redis as redis_url.
    cache_redis_url: str = ""
    # Every Redis client retries a command that met a dropped connection (a Redis restart) this many times,
    # backing off exponentially up to redis_backoff_max_s, and checks a connection idle for longer than
    # redis_health_check_interval_s before using it: a restart delays calls, it does not fail them.
    redis_retries: int = Field(default=8, ge=0)
    redis_backoff_max_s: float = Field(default=2.0, gt=0)
    redis_health_check_interval_s: float = Field(default=5.0, ge=0)
    # Content-addressed image blobs live this long after their last write.
    blob_ttl_s: int = Field(default=6 * 3600, ge=60)
    # Largest encoded image accepted anywhere (client upload, tool output, page image).
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Checked from the header before decoding: a decompression bomb never gets decoded.
    max_image_pixels: int = Field(default=40_000_000, ge=1024)
    # Decode work a small file may buy: an image over 4 Mpx must not declare more pixels per byte of file than
    # this (checked from the header, before decoding). Blank PNG/GIF/JPEG stay under ~1,300; a 1.3 kB TIFF
    # declaring 31.6 Mpx is 24,000.
    max_image_pixels_per_byte: int = Field(default=8192, ge=1)
    celery_result_expires_s: int = Field(default=3600, ge=60)
    # Redis visibility timeout of the broker; every task's hard time limit (300 s) stays below it. A message a
    # killed worker held is given back to the queue after this long (the gateway deletes the ones it re-sent).
    celery_visibility_timeout_s: int = Field(default=600, ge=60)
    # Public base URL at which blobs are served at signed, expiring URLs (reverse image search).
    public_base_url: str = "http://127.0.0.1:8090"
    blob_url_secret: SecretStr = SecretStr("change-me-in-production")
    blob_url_ttl_s: int = Field(default=900, ge=30)
    # Persistent cache + local index: Elasticsearch when set, the embedded engine otherwise.
    elasticsearch_url: str | None = None
    # Every Elasticsearch index the fabric creates is named `<prefix>-…`.
    elasticsearch_prefix: str = "toolfabric"
    data_dir: str = "./.toolfabric"
    # off: no cache; live: read-through; record: always call, store; replay: cache only, miss = error.
    cache_mode: Literal["off", "live", "record", "replay"] = "live"
    # Hot tier (Redis) entry lifetime, and how long the persistent tier keeps an entry by default.
    cache_hot_ttl_s: int = Field(default=3600, ge=1)
    cache_persistent_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    # How long identical concurrent requests wait for the one that calls the provider.
    cache_single_flight_wait_s: float = Field(default=60.0, gt=0)
    # Locks and leases a worker holds while it works (single-flight locks, per-host fetch slots) live this
    # long unless renewed (every third of it): a worker killed mid-call frees them within this time.
    worker_lease_ttl_s: float = Field(default=1.0, gt=0)
    # A frozen eval's bundle (folder) answering searches and pages first; with cache_mode=replay, only it
    # answers (`toolfabric eval run --bundle`, docs/evaluation.md).
    cache_bundle: str = ""
    log_level: str = "INFO"

    @property
    def cache_url(self) -> str:
        """The Redis of image blobs and the hot cache (the one Redis of a dev stack unless split)."""
        return self.cache_redis_url or self.redis_url


class WorkerSettings(BaseSettings):
    """Celery worker process knobs shared by the three tool services."""

    model_config = config("TOOLFABRIC_WORKER_")

    concurrency: int = Field(default=2, ge=1)
    # Hard limit per task (seconds); must stay below the broker visibility timeout.
    task_time_limit_s: int = Field(default=300, ge=1)
    task_soft_time_limit_s: int = Field(default=240, ge=1)
    prefetch_multiplier: int = Field(default=1, ge=1)
    # Readiness without a broker round trip: while its consumer is connected, the worker touches this
    # file every `heartbeat_interval_s` (a probe checks its age). Unset = no heartbeat file.
    heartbeat_file: str | None = None
    # The same heartbeat goes to Redis, where gateways see which services have a live consumer; a worker
    # silent for `heartbeat_ttl_s` counts as gone.
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=8.0, gt=0)


class TelemetrySettings(BaseSettings):
    """Toolfabric-specific telemetry switches; exporters follow the standard OTEL_* variables."""

    model_config = config("TOOLFABRIC_TELEMETRY_")

    # Record tool arguments/results on spans (may contain user data): opt-in.
    capture_content: bool = False
    # Prometheus endpoint of a worker process (the gateway has its own, GatewaySettings.metrics_port).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # JSON-lines span file of OTEL_TRACES_EXPORTER=file; default <data_dir>/traces.jsonl.
    traces_file: str | None = None
    # (TOOLFABRIC_TELEMETRY_JAEGER_QUERY_URL is read by the SDK's `toolfabric trace`, which imports no settings.)


@lru_cache(maxsize=1)
def common() -> CommonSettings:
    return CommonSettings()


@lru_cache(maxsize=1)
def worker() -> WorkerSettings:
    return WorkerSettings()


@lru_cache(maxsize=1)
def telemetry() -> TelemetrySettings:
    return TelemetrySettings()
