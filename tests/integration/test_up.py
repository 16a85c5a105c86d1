"""`toolfabric up` starts the stack and Ctrl-C stops every process it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import alive, descendants

pytestmark = pytest.mark.integration


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "toolfabric.cli.main", "up", "--port", "0", "--workdir",
                             str(tmp_path), "--no-demo-site"], stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C stops everything" in line or proc.poll() is not None:
                break
        assert any("ready in" in x for x in lines), "".join(lines)
        assert any("authentication is OFF" in x for x in lines)  # the open embedded default says so loudly
        assert any("HTTP API" in x and "/v1" in x for x in lines)
        started = descendants(proc.pid)
        assert len(started) >= 6  # redis, triton (+ stubs), three workers (+ pool children), gateway
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in started):
            time.sleep(0.2)
        assert [p for p in started if alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
