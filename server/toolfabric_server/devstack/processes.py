"""Starting and stopping the child processes of the embedded stack and of the tests."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def source_roots() -> list[str]:
    """Where the server package and the SDK are imported from (one folder when installed, two in a checkout),
    for child processes that do not run this venv's site hooks (Triton's python stubs, plugin test processes)."""
    import toolfabric
    import toolfabric_server

    roots = (Path(toolfabric_server.__file__).resolve().parents[1], Path(toolfabric.__file__).resolve().parents[1])
    return list(dict.fromkeys(str(r) for r in roots))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def children_of(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc), oldest first; empty once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll `check` until it holds; fail fast, with the log's tail, if `proc` dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready{_tail(log)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} was not ready after {timeout_s:.0f}s{_tail(log)}")


def log_says(log: Path | None, *needles: str) -> bool:
    """Whether the log mentions any of `needles` (e.g. a port lost to another process)."""
    if log is None or not log.exists():
        return False
    text = log.read_text(errors="replace").lower()
    return any(n.lower() in text for n in needles)


PORT_TAKEN = ("address already in use", "failed to bind", "could not create server socket", "errno 98")


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last lines of " + str(log) + " ---\n" + "\n".join(text)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the forked child, before exec: SIGTERM it when the process that started it dies, however it dies
    (SIGKILL, a closed terminal, a broken pipe). SIGTERM, not SIGKILL, so redis-server, Triton and Celery
    still stop their own children (pool processes, backend stubs). Linux ties the signal to the *thread* that
    started the child: start children from a thread that lives as long as they should (the main thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Child:
    """A child process with its output in a log file, in its own process group, that dies with its parent."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.argv, self.env, self.cwd = list(argv), env, cwd
        self.restarts = 0
        self._spawn()

    def _spawn(self) -> None:
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own group: stopping it stops its children (Celery pool, Triton stub)
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def respawn(self) -> None:
        """Start the same command again (after it died), appending to the same log."""
        self.stop()
        self._spawn()
        self.restarts += 1

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Reap stragglers of the group (e.g. a Celery pool child) even if the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log_file.close()
