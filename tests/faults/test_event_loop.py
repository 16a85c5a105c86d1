"""The gateway never blocks its event loop: a gateway running in this process, under asyncio's debug mode with
slow-callback detection at 50 ms, serves concurrent trajectories (tool calls on two services, an input
image, recording, leases).

This machine is shared and often runs 10+ processes per core: a callback can wait longer than 50 ms for a
CPU, or for the GIL held by a preempted thread, without doing anything wrong. So each callback over 50 ms is
measured from the thread's scheduler statistics (/proc/self/task/<tid>/schedstat), and the test fails on
  - a callback that spent over 50 ms on a CPU (the loop computing instead of serving), and
  - any blocking socket operation on the loop's thread (an audit hook sees every connect and name lookup:
    a synchronous Redis, broker or HTTP client would be caught at its first connection).
It found the gateway's two real stalls: pydantic building every tool's JSON schema for each trajectory's
system prompt, and full garbage collections over the start-up heap (now frozen with gc.freeze()).

The gateway process runs serve() on uvloop, whose callbacks are compiled and cannot be wrapped: here serve()
runs on asyncio's own loop, whose Handle._run can. The callbacks measured are the gateway's own coroutines and
callbacks, the same code on either loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import clear_settings_cache
from tests.faults.conftest import code_call, script
from toolfabric import AsyncClient
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.devstack.stack import DEMO_DIR, EmbeddedStack

pytestmark = pytest.mark.integration
SLOW_S = 0.05
CALLS = (code_call("print(2 + 2)")
         + '<tool_call>{"name": "text_search", "arguments": {"queries": ["astronaut"]}}</tool_call>'
         + '<tool_call>{"name": "crop", "arguments": {"image": "<image 1>", "bbox": [0, 0, 100, 100], '
           '"coords": "pixel"}}</tool_call>')


class _SlowCallbacks(logging.Handler):
    """asyncio's own reports of slow callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if re.search(r"^Executing .* took [0-9.]+ seconds", message):
            self.reported.append(message)


def _schedstat() -> tuple[int, int]:
    """(ns on a CPU, ns waiting for a CPU) of the calling thread."""
    fields = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").read_text().split()
    return int(fields[0]), int(fields[1])


def _describe(handle: asyncio.events.Handle) -> str:
    """The callback, and for a task the coroutine it ran (where it stopped now)."""
    task = getattr(handle._callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame else ""
        return f"task {task.get_name()} {getattr(coro, '__qualname__', coro)}{where}"
    return repr(handle)[:300]


_watched_thread: list[int] = []
_blocking_io: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    # Installed once per process (audit hooks cannot be removed); active only while a thread is watched.
    if _watched_thread and threading.get_ident() == _watched_thread[0]:
        if event == "socket.getaddrinfo":
            _blocking_io.append(f"name lookup {args[:2]}")
        elif event == "socket.connect":
            sock = args[0]
            if getattr(sock, "gettimeout", lambda: 0.0)() != 0.0:
                _blocking_io.append(f"blocking connect to {args[1]}")


sys.addaudithook(_audit)


class _HeldUp:
    """Wraps every callback the loop runs: wall time minus time waiting for a CPU."""

    def __init__(self) -> None:
        self.slow: list[tuple[float, float, float, str]] = []
        self.gc_pauses: list[tuple[float, int]] = []
        self._run = asyncio.events.Handle._run

    def __enter__(self) -> _HeldUp:
        original, slow = self._run, self.slow
        gc_started = [0.0]

        def gc_timer(phase: str, info: dict) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                self.gc_pauses.append((time.perf_counter() - gc_started[0], info.get("generation", -1)))

        gc.callbacks.append(gc_timer)
        self._gc_timer = gc_timer

        def timed(handle: asyncio.events.Handle) -> None:
            t0, (cpu0, wait0) = time.perf_counter(), _schedstat()
            original(handle)
            wall = time.perf_counter() - t0
            if wall > SLOW_S:
                cpu1, wait1 = _schedstat()
                slow.append((wall, (cpu1 - cpu0) / 1e9, wall - (wait1 - wait0) / 1e9, _describe(handle)))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]
        gc.callbacks.remove(self._gc_timer)


@pytest.fixture
def gateway_env(fault_stack: EmbeddedStack) -> Iterator[int]:
    port = free_port()
    saved = dict(os.environ)
    os.environ.update(fault_stack.env() | {"TOOLFABRIC_GATEWAY_PORT": str(port),
                                           "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": "0",
                                           # the stack's own gateway holds its HTTP doors' ports
                                           "TOOLFABRIC_HTTP_PORT": "0", "TOOLFABRIC_STEP_HTTP_PORT": "0",
                                           "TOOLFABRIC_MCP_HTTP_PORT": "0"})
    clear_settings_cache()
    try:
        yield port
    finally:
        os.environ.clear()
        os.environ.update(saved)
        clear_settings_cache()


async def _started(server: asyncio.Task[None], ready: asyncio.Event, timeout_s: float) -> None:
    """Wait until the gateway serves; a gateway that failed to start fails the test with its error, not a hang."""
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({server, waiting}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if server.done():
        server.result()  # raises the gateway's own error
        raise AssertionError("the gateway stopped before it was ready")
    assert ready.is_set(), f"the gateway was not ready within {timeout_s:g}s"


def test_no_callback_on_the_gateway_loop_takes_over_50_ms(gateway_env: int) -> None:
    from toolfabric_server.gateway.process_settings import GatewayProcessSettings
    from toolfabric_server.gateway.server import serve

    image = (DEMO_DIR / "question.jpg").read_bytes()
    reports = _SlowCallbacks()
    held = _HeldUp()

    async def main() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve(GatewayProcessSettings.read(), ready, stop))
        await _started(server, ready, 60)
        target = f"127.0.0.1:{gateway_env}"
        async with AsyncClient(target, timeout_s=120) as client:
            # A warm-up run first: imports done lazily on first use are start-up cost, not serving.
            await client.ask(script(CALLS, "<answer>warm</answer>"), images=[image], model="toolfabric_scripted")
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = SLOW_S
            _watched_thread.append(threading.get_ident())
            with held:
                results = await asyncio.gather(*[
                    client.ask(script(CALLS, "<answer>ok</answer>"), images=[image], model="toolfabric_scripted")
                    for _ in range(12)])
            _watched_thread.clear()
            loop.set_debug(False)
        stop.set()
        await server
        assert [r.status for r in results] == ["STATUS_COMPLETED"] * 12
        assert all(not o.is_error for r in results for o in r.observations), \
            [o.text for r in results for o in r.observations if o.is_error]

    logging.getLogger("asyncio").addHandler(reports)
    try:
        asyncio.run(main())
    finally:
        logging.getLogger("asyncio").removeHandler(reports)
    # Every callback asyncio reported was seen by the wrapper too; none held the loop for over 50 ms.
    assert len(held.slow) >= len(reports.reported) - 1  # (the one running when debug mode was switched on)
    computing = [(f"wall {wall:.3f}s", f"on CPU {cpu:.3f}s", f"off CPU, not waiting for one {held_s - cpu:.3f}s",
                  what) for wall, cpu, held_s, what in held.slow if cpu > SLOW_S]
    assert computing == [], (computing, "longest GC pauses (s, generation):", sorted(held.gc_pauses)[-3:])
    assert _blocking_io == []
