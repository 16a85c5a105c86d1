"""One-line calls for the moments worth seeing: each marks the current span and bumps the metric.

Services call these where the thing happens (a cache lookup, a retry, a rate-limit wait, a
sandbox limit, a provider call, a failed tool); with tracing off the span part costs nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import Status, StatusCode

from toolfabric_server.common.telemetry import metrics
from toolfabric_server.common.telemetry.run_span import UNTRACED
from toolfabric_server.common.tools import ToolResult


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Client calls inside are the fabric's bookkeeping, not the tool's work: no spans for them."""
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def untraced_context() -> contextvars.Context:
    """A fresh context with no span and client calls untraced: for a background task doing the fabric's bookkeeping
    (`asyncio.create_task(..., context=untraced_context())`), which would otherwise inherit whichever caller's span
    was current when it was started."""
    ctx = contextvars.Context()
    ctx.run(otel_context.attach, UNTRACED)
    return ctx


T = TypeVar("T")


def traced_as_now(work: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """`work`, to run later with tracing as it is now (inside an `untraced()` block: the tool's real work)."""
    now = otel_context.get_current()

    async def run() -> T:
        token = otel_context.attach(now)
        try:
            return await work()
        finally:
            otel_context.detach(token)

    return run


def cache_lookup(tier: str, hit: bool, namespace: str = "") -> None:
    """A lookup in one cache tier ("hot", "persistent", …)."""
    metrics.cache_lookup(tier, hit)
    span = trace.get_current_span()
    if span.is_recording():
        result = "hit" if hit else "miss"
        span.add_event(f"cache.{result}", {"toolfabric.cache.tier": tier, "toolfabric.cache.namespace": namespace})
        span.set_attribute(f"toolfabric.cache.{tier}", result)


def cache_outcome(namespace: str, source: str, persistent_tier: bool) -> None:
    """Where a two-tier cache lookup was answered: "hot", "persistent", or a miss of every tier
    ("provider", "shared" — an identical call in flight answered — or "replay_miss")."""
    if source == "off":
        return
    cache_lookup("hot", source == "hot", namespace)
    if source != "hot" and persistent_tier:
        cache_lookup("persistent", source == "persistent", namespace)


def retry(what: str, attempt: int, reason: BaseException | str) -> None:
    """Attempt number `attempt` (1-based) of `what` failed and will be tried again."""
    span = trace.get_current_span()
    if span.is_recording():
        attributes: dict[str, str | int] = {"toolfabric.retry.of": what, "toolfabric.retry.attempt": attempt,
                                            "toolfabric.retry.reason": str(reason)[:200]}
        if isinstance(reason, BaseException):
            attributes["error.type"] = type(reason).__qualname__
        span.add_event("retry", attributes)


def rate_limit_wait(limiter: str, seconds: float) -> None:
    """Time spent blocked on a rate limiter (bucket names are `<service>:<what>[:<detail>]`)."""
    # The metric keeps `<service>:<what>`: one series per fetched host would never stop growing.
    metrics.rate_limit_wait(":".join(limiter.split(":")[:2]), seconds)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("rate_limit.wait", {"toolfabric.rate_limit.limiter": limiter,
                                           "toolfabric.rate_limit.wait_s": round(seconds, 6)})


def sandbox_limit(limit: str, detail: str = "") -> None:
    """A sandboxed run was stopped by `limit` ("cpu", "wall", "memory", "file_size", "processes", "signal")."""
    metrics.sandbox_limit_kill(limit)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("toolfabric.sandbox.limit", limit)
        span.add_event("sandbox.limit_exceeded", {"toolfabric.sandbox.limit": limit, "message": detail})


def provider_call(provider: str, outcome: str, cost_units: float = 0.0) -> None:
    """One call to an external provider (search API, …); `outcome` is "ok" or the error kind."""
    metrics.provider_call(provider, outcome, cost_units)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("provider.call", {"toolfabric.provider": provider, "toolfabric.provider.outcome": outcome,
                                         "toolfabric.provider.cost_units": cost_units})


def exception(exc: BaseException) -> None:
    """Attach a caught exception (type, message, stack) to the current span; a sandbox limit is counted."""
    limit = getattr(exc, "sandbox_limit", None)  # set on the vision service's sandbox errors
    if isinstance(limit, str):
        sandbox_limit(limit, str(exc)[:200])
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)


def failed(error_type: str, message: str, exc: BaseException | None = None) -> None:
    """Mark the current span failed: error status, `error.type`, and the exception when there is one."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if exc is not None:
        span.record_exception(exc)
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message))


def tool_executed(tool: str, result: ToolResult, seconds: float) -> None:
    """At the end of a tool call in the worker: count it, and mark its run span failed if it failed."""
    metrics.tool_execution(tool, "ok" if result.ok else (result.error_kind or "error"), seconds)
    if not result.ok:
        failed(result.error_kind or "error", result.text[:500])
