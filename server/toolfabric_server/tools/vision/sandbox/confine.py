"""The isolation layers a sandboxed child applies to itself, in order, before running any user code.

1. own session and process group (the worker kills the whole group at the wall-time limit);
2. rlimits: CPU seconds, address space, file size, process count, open files, no core dumps;
3. as root: a fresh uid/gid of its own (uid_base + pid) and no supplementary groups, so it owns
   nothing but its working directory and its process count is its own;
4. no capabilities, no_new_privs, not dumpable, killed if the zygote dies;
5. Landlock: read the Python runtime and libraries, read-write the working directory, no TCP,
   signals scoped to itself (when the kernel has Landlock);
6. seccomp: no sockets, exec, namespaces, ptrace, io_uring, leaving the process group.
The network namespace is entered once by the zygote (as root, or through a user namespace where
unprivileged ones are allowed), so every child starts without a network interface. Environment
scrubbing happens when the zygote is spawned.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sysconfig
from dataclasses import dataclass

from toolfabric_server.tools.vision.sandbox import landlock, seccomp

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP = 1, 4, 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_MB = 1024 * 1024
# Read-only places a lazily imported module or library may come from; everything else is hidden.
_SYSTEM_READ = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache",
                "/dev/null", "/dev/zero", "/dev/urandom")


@dataclass(frozen=True)
class Limits:
    cpu_s: int
    memory_mb: int
    file_size_mb: int
    max_processes: int
    open_files: int = 64


def runtime_read_paths() -> list[str]:
    """The interpreter's library directories (stdlib, site-packages) plus system libraries."""
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return sorted(paths) + list(_SYSTEM_READ)


def virtual_memory_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def uid_task_count(uid: int) -> int:
    """Tasks (threads count: RLIMIT_NPROC counts them) currently running as `uid`."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def hide_process_from_same_uid() -> None:
    """Make the calling (worker) process non-dumpable: its /proc environ and memory become root-only.

    Where the worker and sandboxed code share a uid (non-root) and Landlock is missing, this keeps
    the worker's environment (Redis password, keys) out of reach of /proc/<worker>/environ.
    """
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def available_layers() -> list[str]:
    """The layers `confine` will apply in this process's environment (the zygote adds its own)."""
    layers = ["process-group", "rlimits"]
    if os.geteuid() == 0:
        layers.append("own-uid")
    abi = landlock.abi_version()
    if abi >= 1:
        layers.append(f"landlock-abi{abi}")
    if seccomp.supported():
        layers.append("seccomp")
    return layers


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """No capabilities at all, even those a user namespace grants (setuid from root drops them too)."""
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly past the last capability
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def confine(workdir: str, limits: Limits, uid_base: int) -> list[str]:
    """Apply every available layer to this process; returns the names of those applied."""
    applied = ["process-group"]
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)

    # Address space counts what the zygote already mapped (numpy, OpenCV): the limit is on top of it.
    address_space = virtual_memory_bytes() + limits.memory_mb * _MB
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    # SIGXCPU at the soft limit, SIGKILL one second later if it is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * _MB, limits.file_size_mb * _MB))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead
    applied.append("rlimits")

    if os.geteuid() == 0:
        uid = uid_base + os.getpid()
        os.chown(workdir, uid, uid)
        for entry in os.scandir(workdir):
            os.chown(entry.path, uid, uid, follow_symlinks=False)
        nproc = limits.max_processes
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        applied.append("own-uid")
    else:
        # Shared uid: the limit has to leave room for the worker's own processes and threads.
        nproc = uid_task_count(os.getuid()) + limits.max_processes
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    _drop_capabilities(libc)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, needed by Landlock and seccomp
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")

    if landlock.abi_version() >= 1:
        abi = landlock.restrict(runtime_read_paths(), [workdir])
        applied.append(f"landlock-abi{abi}")
    if seccomp.supported():
        seccomp.install()
        applied.append("seccomp")
    return applied
