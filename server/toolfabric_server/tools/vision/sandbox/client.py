"""Worker side of the sandbox: owns one zygote per worker process and runs calls through it.

The zygote is started lazily (or at worker-process start) with a scrubbed environment, and
restarted if it dies. Calls through one zygote are serialised; a Celery prefork pool process
runs one task at a time anyway. The worker, not the zygote, enforces the wall-time limit: it
kills the child's whole process group, and restarts a zygote that stops answering.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import toolfabric_server
from toolfabric_server.common.errors import ToolInternalError
from toolfabric_server.tools.vision.sandbox import protocol

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0
# After a kill, how long the zygote gets to report the reaped child before it is replaced.
_REAP_GRACE_S = 5.0


def scrubbed_environment() -> dict[str, str]:
    """The zygote's whole environment: nothing of the worker's (no Redis URL, no API keys)."""
    root = str(Path(next(iter(toolfabric_server.__path__))).resolve().parent)
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": root,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "random",
        # One thread per library: threads count against the process limit, and a call gets one core.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class _ZygoteGone(Exception):
    """The zygote was dead before it forked this call's child."""


@dataclass
class Exit:
    """How a child ended, as the zygote reaped it."""

    pid: int
    status: int
    cpu_s: float = 0.0
    max_rss_kb: int = 0
    wall_s: float = 0.0
    killed_for_time: bool = False

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None


class Zygote:
    """A running zygote and its two pipes."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        if process.stdin is None or process.stdout is None:
            raise ValueError("the zygote needs stdin and stdout pipes")
        self.process = process
        self.layers: list[str] = []
        self._stdin, self._stdout = process.stdin, process.stdout
        self._buffer = b""

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: dict[str, Any]) -> None:
        self._stdin.write(json.dumps(message).encode() + b"\n")
        self._stdin.flush()

    def receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message, or None if none arrived in time. Raises EOFError if the zygote died."""
        fd = self._stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            poller = select.poll()  # not select(): a worker may hold more than 1024 descriptors
            poller.register(fd, select.POLLIN | select.POLLHUP)
            if not poller.poll(remaining * 1000):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("the sandbox zygote exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def stop(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            # SIGKILLed, it dies; waiting (without a limit to trip on a loaded machine) reaps it.
            self.process.wait()
        self._stdout.close()


class Sandbox:
    """Runs `protocol.Request`s in fresh, confined children of a warm zygote."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._zygote: Zygote | None = None
        self._owner_pid = 0
        self._running_pid = 0  # the child of the call in progress (its pid is its process group)

    def start(self) -> Zygote:
        """Start the zygote now (idempotent); the first call otherwise pays for it."""
        with self._lock:
            return self._ensure()

    def layers(self) -> list[str]:
        return list(self.start().layers)

    def _ensure(self) -> Zygote:
        # A zygote belongs to the process that started it: a forked worker gets its own.
        if self._zygote is not None and self._owner_pid == os.getpid() and self._zygote.alive():
            return self._zygote
        if self._zygote is not None and self._owner_pid == os.getpid():
            self._zygote.stop()
        self._zygote = None
        process = subprocess.Popen(
            [sys.executable, "-s", "-m", "toolfabric_server.tools.vision.sandbox.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=scrubbed_environment(),
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        zygote = Zygote(process)
        try:
            ready = zygote.receive(_START_TIMEOUT_S)
        except EOFError:
            ready = None
        except BaseException:
            # Interrupted while it starts (Celery's soft time limit, a signal): nobody would own it.
            zygote.stop()
            raise
        if not ready or not ready.get("ready"):
            zygote.stop()
            raise ToolInternalError(f"the sandbox zygote did not start (exit code {process.poll()})")
        zygote.layers = list(ready.get("layers", []))
        self._zygote, self._owner_pid = zygote, os.getpid()
        return zygote

    def run(self, request: protocol.Request, wall_s: float) -> Exit:
        with self._lock:
            try:
                return self._attempt(request, wall_s)
            except _ZygoteGone:
                pass  # it died between calls, before any of this call ran: one retry on a fresh one
            try:
                return self._attempt(request, wall_s)
            except _ZygoteGone:
                raise ToolInternalError("the sandbox zygote keeps dying before it can run code") from None

    def _attempt(self, request: protocol.Request, wall_s: float) -> Exit:
        zygote = self._ensure()
        try:
            return self._run(zygote, request, wall_s)
        except _ZygoteGone:
            self._discard(zygote)
            raise
        except (EOFError, OSError, ValueError) as exc:
            self._discard(zygote)
            raise ToolInternalError(f"the sandbox failed: {exc}") from None
        except BaseException:
            # Interrupted mid-call (e.g. Celery's soft time limit): the zygote may still answer for
            # this child later and would be out of step with the next call. Replace it; its death
            # kills the child too (parent-death signal).
            self._discard(zygote)
            raise

    def _run(self, zygote: Zygote, request: protocol.Request, wall_s: float) -> Exit:
        started = time.monotonic()
        try:
            zygote.send(dict(request))
            hello = zygote.receive(_START_TIMEOUT_S)
        except (EOFError, BrokenPipeError) as exc:
            raise _ZygoteGone() from exc
        if hello is None:
            self._discard(zygote)
            raise ToolInternalError("the sandbox zygote did not fork a child in time")
        pid = self._running_pid = int(hello["pid"])
        killed = False
        done = zygote.receive(max(0.0, wall_s - (time.monotonic() - started)))
        if done is None:
            killed = True
            # The group, and the child itself in case it had not yet made its own group.
            for kill, target in ((os.killpg, pid), (os.kill, pid)):
                try:
                    kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            done = zygote.receive(_REAP_GRACE_S)
            if done is None:
                self._discard(zygote)
                raise ToolInternalError("the sandbox zygote did not reap a killed child")
        self._running_pid = 0
        return Exit(pid=pid, status=int(done["status"]), cpu_s=float(done.get("cpu_s", 0.0)),
                    max_rss_kb=int(done.get("max_rss_kb", 0)), wall_s=time.monotonic() - started,
                    killed_for_time=killed)

    def _discard(self, zygote: Zygote) -> None:
        # The running call's group first: what the code forked does not get the parent-death signal.
        groups = [g for g in (self._running_pid, zygote.process.pid) if g]
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._running_pid = 0
        zygote.process.wait()  # SIGKILLed above: it dies, however loaded the machine
        zygote.stop()
        self._zygote = None

    def close(self) -> None:
        with self._lock:
            if self._zygote is not None and self._owner_pid == os.getpid():
                self._zygote.stop()
            self._zygote = None
