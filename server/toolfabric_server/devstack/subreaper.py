"""Runs a server so that none of its children outlives it: `python -m toolfabric_server.devstack.subreaper CMD ARG…`.

Triton starts one python-backend stub process per model instance. Killed with SIGKILL, Triton cannot stop them,
and they lived on (re-parented to init). This small parent is a child subreaper (PR_SET_CHILD_SUBREAPER):
orphans of CMD become its children, and when CMD exits, however it exits, every process left in its process
group is killed and reaped, and it exits with CMD's status. SIGTERM/SIGINT are passed on to CMD (a graceful
stop: Triton stops its own stubs), and CMD gets SIGTERM if this parent itself dies (PR_SET_PDEATHSIG).
Standard library only: it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def group_members(pgid: int, but: int) -> list[int]:
    """The processes of process group `pgid` other than `but` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == but:
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":  # fields: state, ppid, pgrp, …
                found.append(int(entry))
    return found


def _kill_the_rest() -> None:
    """SIGKILL whatever is left of the group (stubs of a killed server), then reap every child."""
    me, pgid = os.getpid(), os.getpgrp()
    for _ in range(50):  # a stub forking at this moment is caught on the next pass
        left = group_members(pgid, me)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
        _reap()
    _reap()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m toolfabric_server.devstack.subreaper CMD [ARG…]", file=sys.stderr)
        return 2
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    proc = subprocess.Popen(argv, preexec_fn=lambda: _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM))

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = proc.wait()
    _kill_the_rest()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
