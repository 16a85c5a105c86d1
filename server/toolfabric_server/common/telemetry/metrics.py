"""Prometheus metrics of the gateway and the tool workers, and the endpoint that serves them.

Call the helpers, never the metric objects: label names stay in this one module. Metrics that
worker pool processes touch all have labels, so they are created after `serve_worker_metrics`
switched the process to multiprocess mode (prefork children write to shared mmap files, which
the worker's main process serves).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import Any

from celery import signals
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

_NS = "toolfabric"
# Tool and provider calls: tens of milliseconds (cache hits) to minutes (sandboxed code, slow pages).
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_RATE_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 640, 1280)


class _Metrics:
    """The metric objects, created on first use, never at import: in multiprocess mode prometheus_client
    writes a file for a metric as it is created, so the directory the process was given must exist first."""

    def __init__(self) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:  # set by the deployment or by use_multiprocess_dir
            os.makedirs(directory, exist_ok=True)
        # -- gateway: trajectories, steps, the model, tool calls as the loop sees them (queue wait included)
        self.TRAJECTORIES_STARTED = Counter(f"{_NS}_trajectories_started", "Trajectories started", ["mode"])
        self.TRAJECTORIES_FINISHED = Counter(
            f"{_NS}_trajectories_finished", "Trajectories finished, by outcome", ["mode", "outcome"]
        )
        self.STEPS = Counter(f"{_NS}_steps", "Model steps taken", ["mode"])
        self.ACTIVE_STREAMS = Gauge(f"{_NS}_active_streams", "Run streams open now", multiprocess_mode="livesum")
        self.HTTP_REQUESTS = Counter(
            f"{_NS}_http_requests", "HTTP API requests, by route and status", ["route", "status"])
        # Per tenant (tenants are created by operators with `toolfabric keys create`: a bounded label).
        self.TENANT_TRAJECTORIES = Counter(
            f"{_NS}_tenant_trajectories", "Trajectories admitted, per tenant", ["tenant"])
        self.TENANT_LIMITED = Counter(f"{_NS}_tenant_limited", "Turns refused over a tenant limit", ["tenant", "limit"])
        self.TENANT_TOOL_CALLS = Counter(f"{_NS}_tenant_tool_calls", "Tool calls, per tenant", ["tenant"])
        self.TENANT_COST = Counter(f"{_NS}_tenant_cost_units", "Provider cost units spent, per tenant", ["tenant"])
        self.TOOL_CALLS = Counter(
            f"{_NS}_tool_calls", "Tool calls dispatched by the loop, by outcome", ["tool", "outcome"])
        self.TOOL_CALL_SECONDS = Histogram(
            f"{_NS}_tool_call_duration_seconds", "Tool call round trip seen by the loop", ["tool"],
            buckets=_CALL_BUCKETS
        )
        self.MODEL_TTFT = Histogram(
            f"{_NS}_model_time_to_first_token_seconds", "Model time to first token", ["model"], buckets=_TTFT_BUCKETS
        )
        self.MODEL_TOKENS_PER_S = Histogram(
            f"{_NS}_model_output_tokens_per_second", "Model decode rate per step", ["model"], buckets=_RATE_BUCKETS
        )
        self.MODEL_TOKENS = Counter(f"{_NS}_model_tokens", "Model tokens, by type (input|output)", ["model", "type"])

        # -- workers: executions, caches, providers, sandbox
        self.TOOL_EXECUTIONS = Counter(
            f"{_NS}_tool_executions", "Tool calls executed by a worker, by outcome", ["tool", "outcome"]
        )
        self.TOOL_EXECUTION_SECONDS = Histogram(
            f"{_NS}_tool_execution_duration_seconds", "Tool execution time in the worker", ["tool"],
            buckets=_CALL_BUCKETS
        )
        self.CACHE_LOOKUPS = Counter(
            f"{_NS}_cache_lookups", "Cache lookups, by tier and result (hit|miss)", ["tier", "result"])
        self.PROVIDER_CALLS = Counter(
            f"{_NS}_provider_calls", "Calls to external providers, by outcome", ["provider", "outcome"])
        self.PROVIDER_COST = Counter(
            f"{_NS}_provider_cost_units", "Cost units spent at external providers", ["provider"])
        self.RATE_LIMIT_WAIT_SECONDS = Histogram(
            f"{_NS}_rate_limit_wait_seconds", "Time spent waiting for a rate limiter", ["limiter"],
            buckets=_CALL_BUCKETS
        )
        self.SANDBOX_KILLS = Counter(f"{_NS}_sandbox_limit_kills", "Sandboxed runs stopped by a limit", ["limit"])


@functools.cache
def _m() -> _Metrics:
    return _Metrics()


def trajectory_started(mode: str) -> None:
    _m().TRAJECTORIES_STARTED.labels(mode).inc()


def trajectory_finished(mode: str, outcome: str) -> None:
    _m().TRAJECTORIES_FINISHED.labels(mode, outcome).inc()


def step(mode: str) -> None:
    _m().STEPS.labels(mode).inc()


def stream_opened() -> None:
    _m().ACTIVE_STREAMS.inc()


def stream_closed() -> None:
    _m().ACTIVE_STREAMS.dec()


def http_request(route: str, status: str) -> None:
    _m().HTTP_REQUESTS.labels(route, status).inc()


def tenant_trajectory(tenant: str) -> None:
    _m().TENANT_TRAJECTORIES.labels(tenant or "anonymous").inc()


def tenant_limited(tenant: str, limit: str) -> None:
    _m().TENANT_LIMITED.labels(tenant or "anonymous", limit).inc()


def tenant_tool_call(tenant: str) -> None:
    _m().TENANT_TOOL_CALLS.labels(tenant or "anonymous").inc()


def tenant_cost(tenant: str, units: float) -> None:
    _m().TENANT_COST.labels(tenant or "anonymous").inc(units)


@contextlib.contextmanager
def active_stream() -> Iterator[None]:
    stream_opened()
    try:
        yield
    finally:
        stream_closed()


def tool_call(tool: str, outcome: str, seconds: float | None) -> None:
    """One tool call as the loop saw it; `outcome` is "ok" or the error kind; no `seconds` if it never ran."""
    _m().TOOL_CALLS.labels(tool, outcome).inc()
    if seconds is not None:
        _m().TOOL_CALL_SECONDS.labels(tool).observe(seconds)


def model_step(model: str, ttft_s: float | None, input_tokens: int, output_tokens: int,
               decode_s: float | None) -> None:
    """One streamed model call: time to first token, token counts, decode rate after the first token."""
    if ttft_s is not None:
        _m().MODEL_TTFT.labels(model).observe(ttft_s)
    _m().MODEL_TOKENS.labels(model, "input").inc(input_tokens)
    _m().MODEL_TOKENS.labels(model, "output").inc(output_tokens)
    if decode_s and decode_s > 0 and output_tokens > 1:
        _m().MODEL_TOKENS_PER_S.labels(model).observe((output_tokens - 1) / decode_s)


def tool_execution(tool: str, outcome: str, seconds: float) -> None:
    _m().TOOL_EXECUTIONS.labels(tool, outcome).inc()
    _m().TOOL_EXECUTION_SECONDS.labels(tool).observe(seconds)


def cache_lookup(tier: str, hit: bool) -> None:
    _m().CACHE_LOOKUPS.labels(tier, "hit" if hit else "miss").inc()


def provider_call(provider: str, outcome: str, cost_units: float = 0.0) -> None:
    _m().PROVIDER_CALLS.labels(provider, outcome).inc()
    if cost_units:
        _m().PROVIDER_COST.labels(provider).inc(cost_units)


def rate_limit_wait(limiter: str, seconds: float) -> None:
    _m().RATE_LIMIT_WAIT_SECONDS.labels(limiter).observe(seconds)


def sandbox_limit_kill(limit: str) -> None:
    _m().SANDBOX_KILLS.labels(limit).inc()


class QueueDepthCollector(Collector):
    """`toolfabric_queue_depth{queue}`: messages waiting in each Celery queue, read from Redis at scrape."""

    # Kombu's Redis transport keeps priorities 3, 6 and 9 in sibling lists named queue + SEP + priority.
    _PRIORITY_SEP = "\x06\x16"
    _PRIORITIES = ("3", "6", "9")

    def __init__(self, redis_url: str, queues: Iterable[str]) -> None:
        self.redis_url = redis_url
        self.queues = list(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import redis

        family = GaugeMetricFamily(f"{_NS}_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"])
        client = redis.Redis.from_url(self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in self.queues:
                for key in (queue, *(queue + self._PRIORITY_SEP + p for p in self._PRIORITIES)):
                    pipe.llen(key)
            lengths = pipe.execute()
        except redis.RedisError:
            return  # no sample beats a wrong zero while Redis is unreachable
        finally:
            client.close()
        per_queue = 1 + len(self._PRIORITIES)
        for i, queue in enumerate(self.queues):
            family.add_metric([queue], float(sum(lengths[i * per_queue:(i + 1) * per_queue])))
        yield family


@dataclass
class MetricsServer:
    port: int
    _server: Any
    _thread: Thread
    _registry: CollectorRegistry
    _collectors: list[Collector]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        for collector in self._collectors:
            self._registry.unregister(collector)


def start_metrics_server(port: int, host: str = "127.0.0.1", collectors: Iterable[Collector] = ()) -> MetricsServer:
    """Serve /metrics on `port` (0: any free port, see `.port`); in multiprocess mode, every process's."""
    _m()  # every metric listed from the first scrape on
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    extra = list(collectors)
    for collector in extra:
        registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(int(server.server_port), server, thread, registry, extra)


def use_multiprocess_dir(path: str | os.PathLike[str] | None = None) -> str:
    """Switch this process (and the processes it forks) to multiprocess metrics in an empty directory.

    Call before any labelled metric is touched. Files left by an earlier run would add their counts
    to this run's, so the directory is emptied.
    """
    chosen = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen is None:
        chosen = tempfile.mkdtemp(prefix="toolfabric-prom-")
        atexit.register(shutil.rmtree, chosen, True)
    directory = Path(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # only prometheus_client's own files: the directory may be shared
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus_client picks its value class when imported; metrics created from now on use files.
    values.ValueClass = values.get_value_class()
    return str(directory)


def _pool_process_exited(**_: Any) -> None:
    mark_process_dead(os.getpid())  # drops its live gauges


def serve_worker_metrics(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """In a Celery worker's main process, before the pool forks: one endpoint for all pool processes."""
    use_multiprocess_dir()
    signals.worker_process_shutdown.connect(_pool_process_exited, weak=False)
    return start_metrics_server(port, host)
