"""Request admission: a bounded number of trajectories run at once, a bounded queue waits for a slot.

A Run is admitted or refused within `admission_wait_s` measured from the call, not from when this gateway
got round to it: a call that already waited in the server (a starved event loop, a burst of calls) has that
much less time to wait for a slot, and one that waited all of it is refused at once. The SDK declares its
call timeout in metadata (`toolfabric-call-timeout-ms`), so the time a call spent before its handler ran is
that minus what gRPC says is left of the deadline (no clocks compared). Refusals are RESOURCE_EXHAUSTED
with a retry hint (the message, and gRPC's `grpc-retry-pushback-ms` trailer) — never left to hit the
client's deadline before its first event. An admitted run's deadline counts from its admission
(`Admitted.at`), and TrajectoryStarted reports both.

Every door marks its call's arrival (`arrived`, a context variable of the call's own task) as early as it can
see it: the gRPC policy interceptor from the declared timeout as above, the HTTP doors' policy middleware when
the ASGI app is first called with the request (before authentication, routing and the body). `slot()` counts
its wait from there, so the chat and step doors are measured from the call too, not from when their handler
got round to asking for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from toolfabric_server.gateway.exceptions import GatewayError

# Set by the SDK on Run: the call's own timeout, so the gateway can tell how long the call queued before it.
CALL_TIMEOUT_KEY = "toolfabric-call-timeout-ms"
# time.monotonic() when the call being handled arrived (None: the door did not say; measured from `slot()`).
_ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar("toolfabric_arrived", default=None)


def arrived(at: float) -> None:
    """Mark when the call handled in this task arrived (time.monotonic()); doors call it first thing."""
    _ARRIVED.set(at)


def queued_since_arrival() -> float:
    """How long ago the call handled in this task arrived (0 if its door did not mark it)."""
    at = _ARRIVED.get()
    return 0.0 if at is None else max(0.0, time.monotonic() - at)


class AdmissionRefused(GatewayError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Admitted:
    at: float  # epoch seconds: the run's deadline counts from here
    wait_s: float  # from the call to its admission


def queued_s(metadata: Sequence[tuple[str, str | bytes]] | None, time_remaining: float | None) -> float:
    """How long a call waited before its handler ran: its declared timeout minus the time left (0 if unknown)."""
    declared = next((v for k, v in metadata or () if k == CALL_TIMEOUT_KEY), None)
    if declared is None or time_remaining is None:
        return 0.0
    try:
        return max(0.0, float(declared) / 1000 - time_remaining)
    except ValueError:
        return 0.0


class Admission:
    def __init__(self, max_running: int, queue: int, wait_s: float) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_running, self._queue, self._wait_s = max_running, queue, wait_s
        self.waiting = 0
        self.running = 0

    @contextlib.asynccontextmanager
    async def slot(self, queued_s: float | None = None) -> AsyncIterator[Admitted]:
        """A running slot within what is left of the admission wait after `queued_s` already spent (default:
        since the call's door marked its arrival)."""
        started = time.monotonic()
        if queued_s is None:
            queued_s = queued_since_arrival()
        retry = max(1.0, self._wait_s / 2)
        budget = self._wait_s - queued_s
        if self._slots.locked() and budget <= 0:
            raise AdmissionRefused(f"gateway busy: the call waited {queued_s:.1f}s before this gateway could take "
                                   f"it up, over the {self._wait_s:g}s admission wait ({self.running} running); "
                                   f"retry in {retry:g}s", retry)
        if self._slots.locked() and self.waiting >= self._queue:
            raise AdmissionRefused(f"gateway busy: {self.running} trajectories running and {self.waiting} waiting "
                                   f"(TOOLFABRIC_GATEWAY_MAX_RUNNING / _ADMISSION_QUEUE); retry in {retry:g}s",
                                   retry)
        self.waiting += 1
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                await self._slots.acquire()
        except TimeoutError:
            raise AdmissionRefused(f"gateway busy: no slot for a new trajectory within {self._wait_s:g}s of the "
                                   f"call ({self.running} running); retry in {retry:g}s", retry) from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield Admitted(time.time(), queued_s + time.monotonic() - started)
        finally:
            self.running -= 1
            self._slots.release()
