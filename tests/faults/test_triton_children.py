"""No child of Triton outlives it (issue 22, item 5): the python-backend stubs of a SIGKILLed tritonserver are
killed by the subreaper it runs under (devstack/subreaper.py), which then exits too."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import alive
from tests.faults.conftest import wait_for
from toolfabric_server.devstack.subreaper import group_members
from toolfabric_server.devstack.triton_server import TritonServer

pytestmark = pytest.mark.integration


def _stubs(triton: TritonServer) -> list[int]:
    assert triton.pid is not None
    return [pid for pid in group_members(triton.pid, triton.pid)
            if "triton_python_backend_stub" in _cmdline(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_stubs_of_a_sigkilled_triton_die_with_it(tmp_path: Path) -> None:
    with TritonServer(tmp_path) as triton:
        stubs = _stubs(triton)
        server = triton.server_pid
        assert stubs, "the baseline model runs in a python-backend stub"
        assert server is not None and "tritonserver" in _cmdline(server)
        os.kill(server, signal.SIGKILL)  # the server alone: nothing can stop its stubs but the subreaper
        took = wait_for(lambda: not any(alive(pid) for pid in stubs), 10, "the stubs to die")
        wait_for(lambda: not triton.alive(), 10, "the subreaper to exit")
        print(f"\n[faults] Triton SIGKILLed: its {len(stubs)} stub(s) gone {took:.1f}s later")
