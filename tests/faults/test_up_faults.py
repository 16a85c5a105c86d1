"""`toolfabric up` supervises its stack: a crashed worker is restarted, and however `up` itself dies
(here SIGKILL, which it cannot catch), every process it started goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import alive, descendants
from tests.faults.conftest import wait_for
from toolfabric import Client

pytestmark = pytest.mark.integration


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _up(workdir: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """`toolfabric up` on `workdir`, its stderr lines collected; returns once the stack is ready."""
    env = dict(os.environ) | {"TOOLFABRIC_WORKER_CONCURRENCY": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "toolfabric.cli.main", "up", "--port", "0", "--workdir",
                             str(workdir), "--no-demo-site"], stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    wait_for(lambda: any("Ctrl-C stops everything" in x for x in lines) or proc.poll() is not None, 120,
             "the stack to be ready")
    assert proc.poll() is None, "".join(lines)
    return proc, lines


def _target(lines: list[str]) -> str:
    return next(x for x in lines if "--target" in x).split("--target ")[1].split()[0]


def test_crashed_worker_is_restarted_and_sigkill_of_up_stops_every_child(tmp_path: Path) -> None:
    proc, lines = _up(tmp_path)
    started: set[int] = set()
    try:
        with Client(_target(lines), timeout_s=60) as client:
            # `up` serves the CPU baseline only; in plan mode it answers with a plan, no tool needed.
            first = client.ask("Who commanded STS-93?", mode="plan")
            kept, kept_answer = first.trajectory_id, first.answer
            assert first.status == "STATUS_COMPLETED" and kept_answer
        [worker] = [p for p in descendants(proc.pid) if "worker vision" in _cmdline(p)
                    and "worker vision" not in _cmdline(int((Path("/proc") / str(p) / "stat").read_text()
                                                            .rsplit(")", 1)[1].split()[1]))]
        os.killpg(worker, signal.SIGKILL)
        # Restarted after a 1 s backoff, with a line saying so — the rest of the stack kept running.
        wait_for(lambda: any("worker-vision restarted" in x for x in lines), 30, "the worker restart")
        assert any("worker-vision died" in x for x in lines)
        assert proc.poll() is None
        wait_for(lambda: any("worker vision" in _cmdline(p) for p in descendants(proc.pid)), 10, "a new worker")

        started = {p for p in descendants(proc.pid) if alive(p)}
        assert len(started) >= 6  # redis, triton (+ stubs), three workers (+ pool children), gateway
        proc.kill()  # SIGKILL: `up` runs no cleanup at all
        proc.wait(10)
        took = wait_for(lambda: not any(alive(p) for p in started), 30, "every child of `up` to stop")
        assert took < 20, f"children took {took:.1f}s to stop"
        print(f"\n[faults] `up` SIGKILLed: all {len(started)} processes gone {took:.1f}s later")

        # `up` again on the same workdir: Redis comes back from its append-only file with the trajectory.
        proc, lines = _up(tmp_path)
        with Client(_target(lines), timeout_s=60) as client:
            assert client.trajectory(kept).answer == kept_answer
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in started | descendants(proc.pid):  # never leave a stack behind, even when an assertion failed
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
