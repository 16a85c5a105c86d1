"""Request admission: a bounded number of trajectories run at once, a bounded queue waits for a slot.

A Run that finds the queue full, or waits longer than `admission_wait_s`, is refused at once with
RESOURCE_EXHAUSTED and a retry hint (the message, and gRPC's `grpc-retry-pushback-ms` trailer) — never
left to hit the client's deadline before its first event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.exceptions import GatewayError


class AdmissionRefused(GatewayError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Admission:
    def __init__(self, max_running: int, queue: int, wait_s: float) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_running, self._queue, self._wait_s = max_running, queue, wait_s
        self.waiting = 0
        self.running = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        retry = max(1.0, self._wait_s / 2)
        if self._slots.locked() and self.waiting >= self._queue:
            raise AdmissionRefused(f"gateway busy: {self.running} trajectories running and {self.waiting} waiting "
                                   f"(TOOLFABRIC_GATEWAY_MAX_RUNNING / _ADMISSION_QUEUE); retry in {retry:g}s",
                                   retry)
        self.waiting += 1
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise AdmissionRefused(f"gateway busy: no slot for a new trajectory within {self._wait_s:g}s "
                                   f"({self.running} running); retry in {retry:g}s", retry) from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()
