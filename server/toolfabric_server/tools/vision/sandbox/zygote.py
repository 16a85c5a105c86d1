"""The zygote: an interpreter with numpy, OpenCV and PIL already imported that forks one fresh
child per `code` call, so a call pays for a fork instead of a Python start-up and imports.

It is spawned by the worker with a scrubbed environment (it never holds the worker's secrets),
enters an empty network namespace when it runs as root, and is a child subreaper: whatever the
sandboxed code forks is reparented here and killed with it. Nothing of one call survives into
the next: every call is a new process, and the zygote itself never runs user code.

Run as `python -m toolfabric_server.tools.vision.sandbox.zygote`; it speaks `protocol` on stdin/stdout and exits
when the worker closes stdin (or dies: parent-death signal).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import sys
import time
from typing import Any

_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def preload() -> None:
    """Import everything a call needs now, once, so forked children start warm."""
    import cv2
    import numpy  # noqa: F401
    from PIL import Image, ImageOps  # noqa: F401

    import toolfabric_server.tools.vision.sandbox.runner  # noqa: F401

    cv2.setNumThreads(1)  # threads count against the child's process limit; one call, one core
    Image.init()


def enter_empty_network_namespace(libc: ctypes.CDLL) -> list[str]:
    """A network namespace with only a down loopback, inherited by every child.

    Root can create one directly. Otherwise it takes a user namespace too, where the kernel and
    the container runtime allow unprivileged ones (container seccomp profiles often do not); our
    own uid/gid map to themselves so files keep their owner. Returns the layers gained.
    """
    if os.geteuid() == 0:
        return ["no-network-namespace"] if libc.unshare(_CLONE_NEWNET) == 0 else []
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return []
    for path, content in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                          ("/proc/self/gid_map", f"{gid} {gid} 1")):
        with open(path, "w") as f:
            f.write(content)
    return ["user-namespace", "no-network-namespace"]


def sweep(pgid: int) -> None:
    """Kill what is left of a call (its process group, then any reparented orphan) and reap it."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 2.0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if time.monotonic() > deadline:
            return
        for child in _children():  # only if something escaped the group
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.append(int(entry.name))
    return found


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve() -> None:
    from toolfabric_server.tools.vision.sandbox.runner import child_main

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        return  # the worker died before we got here
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    layers = ["fresh-process", "scrubbed-env"]
    layers += enter_empty_network_namespace(libc)
    _send({"ready": True, "pid": os.getpid(), "layers": layers})

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = 70  # EX_SOFTWARE: the runner itself failed
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                status = child_main(request, layers)
            except BaseException as exc:
                try:
                    os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(status)
        _send({"pid": pid})
        while True:
            try:
                _, status, usage = os.wait4(pid, 0)
                break
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
        sweep(pid)
        _send({"pid": pid, "status": status, "cpu_s": usage.ru_utime + usage.ru_stime,
               "max_rss_kb": usage.ru_maxrss})


def main() -> None:
    os.umask(0o077)
    preload()
    serve()


if __name__ == "__main__":
    main()
