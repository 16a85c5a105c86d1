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
import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from toolfabric_server.gateway.exceptions import GatewayError

log = logging.getLogger(__name__)
_TICK_S = 0.1  # how often the event loop's lag is sampled (with `max_lag_s`)
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
    """`max_running` slots and a FIFO queue of at most `queue` waiters, each waiting at most `wait_s` from its call.

    With `max_lag_s` > 0 the slots also follow what this process can run (a burst of a thousand Runs admitted at
    once starves the event loop: calls wait in gRPC's queue for minutes, streams and results are read late, and
    throughput falls as N grows). The loop's lag is sampled every `_TICK_S`. The limit starts at `min_running`
    and, while calls wait and the loop keeps up, grows by a quarter (at least one slot) a tick up to `max_running`
    (16 to 600 in about 2 s: a burst the loop can carry is admitted within its admission wait); while the loop
    lags more than `max_lag_s` no waiter is admitted (the limit follows the running count down, not below
    `min_running`). Waiters are admitted strictly in arrival order. A refusal's retry hint is the time the queue
    ahead would take to drain at the rate slots were recently freed (at least 1 s).
    """

    def __init__(self, max_running: int, queue: int, wait_s: float, max_lag_s: float = 0.0,
                 min_running: int = 16) -> None:
        self._max_running, self._queue, self._wait_s = max_running, queue, wait_s
        self._max_lag_s, self._min_running = max_lag_s, min(min_running, max_running)
        # The slots open now: all without `max_lag_s`, else from `min_running` up as far as the loop keeps up.
        self.limit = float(self._min_running if max_lag_s else max_running)
        self.lag_s = 0.0  # the event loop's last measured lag
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._hold_s = 0.0  # recent mean time a slot was held (for the retry hint)
        self._monitor: asyncio.Task[None] | None = None
        self._warned = 0.0
        self.running = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _room(self) -> bool:
        return self.running < self.limit

    def _retry_s(self) -> float:
        if not self._hold_s:
            return max(1.0, self._wait_s / 2)
        drain = (len(self._waiters) + 1) * self._hold_s / max(self.limit, 1.0)
        return float(min(max(1.0, round(drain, 1)), 600.0))

    def _wake(self) -> None:
        while self._waiters and self._room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.running += 1  # taken for the waiter, which finds it when it resumes

    def _release(self, held_s: float) -> None:
        self.running -= 1
        self._hold_s = held_s if not self._hold_s else 0.9 * self._hold_s + 0.1 * held_s
        self._wake()

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_TICK_S)
            self.lag_s = max(0.0, loop.time() - before - _TICK_S)
            if self._waiters and time.monotonic() - self._warned > 30:  # what it does under load, for operators
                self._warned = time.monotonic()
                log.info("admission: %d running, %d waiting, up to %d admitted (TOOLFABRIC_GATEWAY_MAX_RUNNING %d); "
                         "event loop lag %.3fs (limit %.2fs)", self.running, len(self._waiters), self.limit,
                         self._max_running, self.lag_s, self._max_lag_s)
            if self.lag_s > self._max_lag_s:
                # Too busy already: admit no one until the running count falls or the loop catches up.
                self.limit = max(float(self._min_running), min(self.limit, self.running))
            elif self._waiters and self.running >= self.limit and self.limit < self._max_running:
                # Calls wait and the loop keeps up: a quarter more. One more a tick took a minute to reach the
                # default 600, so a burst of a few hundred Runs on a gateway with room was refused.
                self.limit = min(float(self._max_running), self.limit + max(1.0, self.limit / 4))
                self._wake()

    @contextlib.asynccontextmanager
    async def slot(self, queued_s: float | None = None) -> AsyncIterator[Admitted]:
        """A running slot within what is left of the admission wait after `queued_s` already spent (default:
        since the call's door marked its arrival)."""
        if self._max_lag_s and self._monitor is None:
            self._monitor = asyncio.get_running_loop().create_task(self._watch_lag(), name="admission-lag")
        started = time.monotonic()
        if queued_s is None:
            queued_s = queued_since_arrival()
        if not self._waiters and self._room():
            self.running += 1
        else:
            await self._queue_for_slot(queued_s)
        try:
            yield Admitted(time.time(), queued_s + time.monotonic() - started)
        finally:
            self._release(time.monotonic() - started)

    async def _queue_for_slot(self, queued_s: float) -> None:
        budget = self._wait_s - queued_s
        if budget <= 0:
            retry = self._retry_s()
            raise AdmissionRefused(f"gateway busy: the call waited {queued_s:.1f}s before this gateway could take "
                                   f"it up, over the {self._wait_s:g}s admission wait ({self.running} running); "
                                   f"retry in {retry:g}s", retry)
        if len(self._waiters) >= self._queue:
            retry = self._retry_s()
            raise AdmissionRefused(f"gateway busy: {self.running} trajectories running and {len(self._waiters)} "
                                   f"waiting (TOOLFABRIC_GATEWAY_MAX_RUNNING / _ADMISSION_QUEUE); retry in "
                                   f"{retry:g}s", retry)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(budget):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the slot came with the timeout: take it
            retry = self._retry_s()
            raise AdmissionRefused(f"gateway busy: no slot for a new trajectory within {self._wait_s:g}s of the "
                                   f"call ({self.running} running); retry in {retry:g}s", retry) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(0.0)  # the caller went away as its slot came: hand the slot on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
