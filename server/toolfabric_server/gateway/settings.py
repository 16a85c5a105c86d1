"""Settings of the gateway process: its ports and budgets, API keys and tenants, TLS.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from toolfabric_server.common.settings import config


class GatewaySettings(BaseSettings):
    """The gRPC gateway and its agent loop."""

    model_config = config("TOOLFABRIC_GATEWAY_")

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
    # A model's streamed text waits up to this long for the tokens after it before it goes out as one TextDelta (the
    # first of a step goes at once): an event per token was most of the gateway's CPU (issue 24); 0 = per chunk.
    text_window_ms: float = Field(default=20.0, ge=0, le=1000)
    # How long the loop waits for one tool call before it becomes a timeout observation.
    tool_timeout_s: float = Field(default=120.0, gt=0)
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
    # Admission also follows this process's event loop (gateway/admission.py): from `admission_min_running` slots
    # up, a quarter more (at least one) every 0.1 s while calls wait and the loop lags less than this; none while
    # it lags more (0 = off: `max_running` slots from the start).
    admission_max_lag_s: float = Field(default=0.25, ge=0)
    admission_min_running: int = Field(default=16, ge=1)
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
    # Services whose calls go several to a Celery message, and at most how many (JSON, e.g. '{"fetch": 32}';
    # common/batches.py): Celery's per-message cost is shared by the calls that waited for the same publish. The
    # calls of one message run one after another in one pool process, so name only services of short calls.
    calls_per_message: dict[str, int] = Field(default_factory=dict)
    # Of each of those services, at most this many messages are out (sent, a call not over) per gateway process; the
    # calls meanwhile wait and go together. Keep it at least the pool processes consuming the service's queue.
    batched_messages_in_flight: int = Field(default=4, ge=1)
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

    model_config = config("TOOLFABRIC_AUTH_")

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

    model_config = config("TOOLFABRIC_TLS_")

    cert_file: str = ""  # empty = plaintext (loopback and the embedded default only)
    key_file: str = ""
    # Plaintext port serving only grpc.health.v1, for probes that cannot speak TLS (Kubernetes' gRPC
    # probes); 0 = none.
    health_port: int = Field(default=0, ge=0, le=65535)
