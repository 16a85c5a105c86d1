"""The one bridge from Celery's synchronous tasks to the asyncio services (search, fetch, ocr, mcp).

Celery's prefork pool calls a handler synchronously; the services are asyncio (Redis, pooled HTTP,
MCP sessions). Each worker process runs one event loop in a daemon thread, started on the first call
(after the fork: a child never inherits its parent's loop), and builds its service on that loop once:
the Redis clients and HTTP pools live as long as the process, not one call.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

S = TypeVar("S")
T = TypeVar("T")

Closer = Callable[[], Awaitable[None]]
Build = Callable[[], Awaitable[tuple[S, Closer]]]


class _Loop(Generic[S]):
    """One process's loop thread and the service built on it."""

    def __init__(self, name: str, build: Build[S]) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"{name}-loop", daemon=True)
        self.thread.start()
        try:
            self.service, self.close = self.submit(build()).result()
        except BaseException:
            self._stop_loop()
            raise

    def submit(self, coro: Awaitable[T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def stop(self) -> None:
        try:
            self.submit(self.close()).result(timeout=10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class AsyncBridge(Generic[S]):
    """Runs `call(service)` on this process's loop; `build` makes the service there on first use.

    Creating a bridge does nothing (no thread, no connection): a module may hold one.
    """

    def __init__(self, name: str, build: Build[S]) -> None:
        self._name, self._build = name, build
        self._current: _Loop[S] | None = None
        self._lock = threading.Lock()

    def _loop(self) -> _Loop[S]:
        with self._lock:
            if self._current is None or self._current.pid != os.getpid():  # a forked child builds its own
                self._current = _Loop(self._name, self._build)
                _started.add(self)
            return self._current

    def run(self, call: Callable[[S], Awaitable[T]]) -> T:
        """`call(service)` on the loop, waited for from any thread; an interrupted wait (Celery's soft time
        limit) cancels the work too, not just the wait."""
        current = self._loop()
        future = current.submit(call(current.service))
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Close this process's service and stop its loop (worker shutdown; tests after changing settings)."""
        with self._lock:
            current, self._current = self._current, None
        if current is not None and current.pid == os.getpid():
            current.stop()


_started: set[AsyncBridge[Any]] = set()


def close_all() -> None:
    """Close every bridge this process started (the worker's pool process is exiting)."""
    for bridge in list(_started):
        bridge.close()
    _started.clear()


async def nothing_to_close() -> None:
    return None


def stateless(value: Any = None) -> Build[Any]:
    """A `build` for a service that holds no connections (the loop is all the bridge gives it)."""

    async def build() -> tuple[Any, Closer]:
        return value, nothing_to_close

    return build
