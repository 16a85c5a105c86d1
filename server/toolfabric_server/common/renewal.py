"""Keeping a Redis lease alive while its holder works: the lease dies with its owner.

A lock or slot held in Redis (a single-flight lock, a per-host fetch slot) gets a short TTL and is renewed
every third of it while the work runs. The holder that finishes, fails or is cancelled releases it at once
(its `finally`); one killed outright (a revoked Celery task is SIGKILLed) stops renewing, and the lease
expires within one TTL — seconds, not the work's whole time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def renewed(renew: Callable[[], Awaitable[object]], ttl_s: float,
                  max_hold_s: float | None = None) -> AsyncIterator[None]:
    """Calls `renew()` every `ttl_s / 3` while the body runs, for at most `max_hold_s` (then the lease lapses:
    a holder stuck past its bound no longer blocks others)."""

    async def keep() -> None:
        until = None if max_hold_s is None else time.monotonic() + max_hold_s
        while until is None or time.monotonic() < until:
            await asyncio.sleep(ttl_s / 3)
            try:
                await renew()
            except Exception as exc:  # Redis blinked: the next renewal (or the expiry) settles it
                log.warning("lease renewal failed: %s", exc)

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
