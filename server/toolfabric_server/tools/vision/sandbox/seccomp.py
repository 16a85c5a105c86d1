"""A seccomp-BPF deny list for sandboxed code, built by hand (no libseccomp needed).

Denied with EPERM: creating sockets (no network, whatever the namespace), exec (no shells or
binaries), leaving the process group (setsid/setpgid: the wall-time kill of the group reaches
every descendant), namespaces, ptrace and cross-process memory access, io_uring (it would
bypass this filter), BPF, perf, keyrings, mounts, modules, reboot. clone3 answers ENOSYS so
libc falls back to clone, whose flags a filter can inspect. A foreign syscall ABI (x32, i386)
kills the process: the numbers below would not mean the same calls.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# name → (x86_64, aarch64) syscall numbers.
_DENIED = {
    "socket": (41, 198), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41),
    "chroot": (161, 51), "unshare": (272, 97), "setns": (308, 268), "bpf": (321, 280),
    "perf_event_open": (298, 241), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "setsid": (112, 157), "setpgid": (109, 154), "execve": (59, 221),
    "execveat": (322, 281), "userfaultfd": (323, 282), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
}
_CLONE = (56, 220)
_CLONE3 = (435, 435)
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_X32_BIT = 0x40000000

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LOW = 0, 4, 16  # struct seccomp_data, little-endian

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


class SeccompUnsupported(OSError):
    pass


def machine() -> str:
    return platform.machine().lower().replace("arm64", "aarch64")


def supported() -> bool:
    return machine() in _AUDIT_ARCH


def program() -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions for this machine's architecture."""
    arch = machine()
    if arch not in _AUDIT_ARCH:
        raise SeccompUnsupported(0, f"no seccomp syscall table for {arch}")
    col = 0 if arch == "x86_64" else 1
    deny_eperm = _RET_ERRNO | errno.EPERM
    prog = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 1, 0, _AUDIT_ARCH[arch]),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        prog += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, _RET_KILL_PROCESS)]
    for numbers in _DENIED.values():
        prog += [(_JEQ, 0, 1, numbers[col]), (_RET, 0, 0, deny_eperm)]
    prog += [(_JEQ, 0, 1, _CLONE3[col]), (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    prog += [
        (_JEQ, 0, 3, _CLONE[col]),
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
        (_JSET, 0, 1, _CLONE_NAMESPACES),
        (_RET, 0, 0, deny_eperm),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    return prog


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Install the filter on the calling (single-threaded) process; irreversible."""
    prog = program()
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
