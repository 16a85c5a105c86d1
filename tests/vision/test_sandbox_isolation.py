"""Hostile code against the sandbox: every limit holds, nothing leaks, the worker survives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.devstack.processes import source_roots
from toolfabric_server.tools.vision import errors
from toolfabric_server.tools.vision.code_tool import run_code
from toolfabric_server.tools.vision.sandbox import confine
from toolfabric_server.tools.vision.sandbox.client import Sandbox
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.tools.vision.store import ImageStore

LAYERS = confine.available_layers()
needs_landlock = pytest.mark.skipif(not any(x.startswith("landlock") for x in LAYERS), reason="no Landlock")
needs_seccomp = pytest.mark.skipif("seccomp" not in LAYERS, reason="no seccomp table for this CPU")


@pytest.fixture
def run(store: ImageStore, sandbox: Sandbox, sandbox_settings: VisionSettings):  # type: ignore[no-untyped-def]
    def go(source: str, sandbox_: Sandbox | None = None, **limits: object) -> ToolResult:
        cfg = sandbox_settings.model_copy(update=limits)
        return run_code(source, ToolContext(), store, sandbox_ or sandbox, cfg)

    return go


def sandbox_processes() -> list[int]:
    """Live processes running under a sandbox uid (uid_base and above)."""
    base = VisionSettings().sandbox_uid_base
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid >= base:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def no_sandbox_process_within(seconds: float) -> bool:
    """True once no sandbox process is left; killed groups take a moment to die on a loaded machine."""
    deadline = time.monotonic() + seconds
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sandbox_processes() == []


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A real TCP server on loopback that records any connection it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_infinite_loop_is_stopped_by_the_cpu_limit(run) -> None:
    with pytest.raises(errors.SandboxCpuTimeout, match="more than its 1 s of CPU time") as caught:
        # A wall limit far above the CPU limit: on a loaded machine 1 s of CPU can take several seconds.
        run("print('spinning')\nwhile True: pass", sandbox_cpu_s=1, sandbox_wall_s=60)
    assert caught.value.kind == "timeout" and "spinning" in str(caught.value)


def test_sleeping_forever_is_killed_at_the_wall_time_limit(run) -> None:
    with pytest.raises(errors.SandboxWallTimeout, match=r"longer than the 1\.5 s wall-time limit and was killed"):
        run("import time\nwhile True: time.sleep(0.1)", sandbox_wall_s=1.5)
    assert no_sandbox_process_within(10)


def test_allocating_20_gb_is_a_memory_error(run) -> None:
    with pytest.raises(errors.SandboxMemoryExceeded, match=r"ran out of memory \(limit 256 MB\)") as caught:
        run("big = np.ones((20 * 1024**3,), dtype=np.uint8)")
    assert caught.value.kind == "resource_exhausted"


def test_growing_memory_step_by_step_hits_the_same_limit(run) -> None:
    with pytest.raises(errors.SandboxMemoryExceeded):
        run("chunks = []\nwhile True: chunks.append(bytearray(50 * 1024 * 1024))")


def test_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind(run) -> None:
    with pytest.raises(errors.SandboxProcessLimit, match="limit of 8 processes/threads"):
        run("import os\nwhile True: os.fork()")
    assert no_sandbox_process_within(10)


def test_fork_bomb_that_ignores_errors_is_killed_with_its_whole_group(run) -> None:
    with pytest.raises((errors.SandboxCpuTimeout, errors.SandboxWallTimeout)):
        run("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", sandbox_wall_s=2.0)
    assert no_sandbox_process_within(10)
    assert run("1 + 1").text == "2"


def test_threads_count_against_the_process_limit(run) -> None:
    source = ("import threading, time\n"
              "ts = [threading.Thread(target=time.sleep, args=(5,), daemon=True) for _ in range(20)]\n"
              "[t.start() for t in ts]")
    with pytest.raises(errors.SandboxProcessLimit):
        run(source)


@needs_seccomp
def test_code_cannot_open_sockets(run, listener: tuple[int, list[object]]) -> None:
    port, accepted = listener
    with pytest.raises(errors.CodeRaised, match=r"PermissionError.*Operation not permitted"):
        run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
    for family in ("AF_INET6", "AF_UNIX", "AF_NETLINK"):
        with pytest.raises(errors.CodeRaised, match="Operation not permitted"):
            run(f"import socket\nsocket.socket(socket.{family}, socket.SOCK_DGRAM)")
    assert accepted == []


@needs_landlock
def test_code_cannot_read_etc_passwd(run) -> None:
    with pytest.raises(errors.CodeRaised, match=r"PermissionError.*'/etc/passwd'"):
        run("print(open('/etc/passwd').read())")


@needs_landlock
def test_code_cannot_list_or_write_outside_its_working_directory(run) -> None:
    for source in ("import os\nos.listdir('..')", "import os\nos.listdir('/tmp')",
                   "open('/tmp/toolfabric-escape.txt', 'w').write('x')", "open('/root/x', 'w')"):
        with pytest.raises(errors.CodeRaised, match="PermissionError"):
            run(source)
    assert not os.path.exists("/tmp/toolfabric-escape.txt")


def test_code_cannot_see_the_workers_environment(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLFABRIC_TEST_SECRET", "hunter2-secret")
    fresh = Sandbox()  # its zygote starts now, while the worker has the secret
    try:
        result = run("import os\ndict(os.environ)", sandbox_=fresh)
        assert "hunter2-secret" not in result.text and "TOOLFABRIC" not in result.text
        for path in (f"/proc/{os.getpid()}/environ", "/proc/self/environ"):
            with pytest.raises(errors.CodeRaised) as caught:
                run(f"open('{path}', 'rb').read()", sandbox_=fresh)
            assert "hunter2" not in str(caught.value)
    finally:
        fresh.close()


@needs_seccomp
def test_code_cannot_run_programs(run) -> None:
    with pytest.raises(errors.CodeRaised, match=r"PermissionError.*Operation not permitted"):
        run("import subprocess\nsubprocess.run(['cat', '/etc/hostname'])")
    result = run("import os\nos.system('echo escaped > /dev/stderr')")
    assert "escaped" not in result.text


def test_code_cannot_signal_the_worker(run) -> None:
    # Signal 0 only checks permission: a broken sandbox must not take the test runner down.
    with pytest.raises(errors.CodeRaised, match="PermissionError"):
        run(f"import os\nos.kill({os.getpid()}, 0)")


def test_writing_a_file_over_the_size_limit_fails_clearly(run) -> None:
    with pytest.raises(errors.SandboxFileSizeLimit, match="more than the 4 MB file-size limit"):
        run("open('big.bin', 'wb').write(b'x' * (5 * 1024 * 1024))")


def test_symlinked_outputs_are_not_followed(run) -> None:
    result = run("import os\nos.symlink('/etc/hostname', 'leak.png')")
    assert result.images == [] and "could not read leak.png" in result.text


def test_crash_of_the_interpreter_is_reported_as_killed(run) -> None:
    with pytest.raises(errors.SandboxKilled, match="killed by SIGSEGV"):
        run("import ctypes\nctypes.string_at(0)")


def test_a_dead_zygote_is_replaced_on_the_next_call(store: ImageStore, sandbox_settings: VisionSettings) -> None:
    box = Sandbox()
    try:
        box.start().process.kill()
        assert run_code("6 * 7", ToolContext(), store, box, sandbox_settings).text == "42"
    finally:
        box.close()


NON_ROOT_SCRIPT = """
import json, os, redis
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.tools.vision.code_tool import check_layers, run_code
from toolfabric_server.tools.vision.sandbox.client import Sandbox
from toolfabric_server.tools.vision.store import ImageStore

cfg = VisionSettings(sandbox_wall_s=30, sandbox_cpu_s=2, sandbox_memory_mb=256, sandbox_max_processes=8)
store = ImageStore(BlobStore(redis.Redis(), 60), 10**7, 10**7, 10**7)  # no images: never connects
box = Sandbox()
out = {"layers": check_layers(box, cfg)}
for name, code in [("uid", "os.getuid()"), ("passwd", "open('/etc/passwd').read()"),
                   ("socket", "import socket; socket.socket()"), ("signal", f"os.kill({os.getpid()}, 0)"),
                   ("fork", "while True: os.fork()")]:
    try:
        out[name] = run_code("import os\\n" + code, ToolContext(), store, box, cfg).text
    except Exception as exc:
        out[name] = type(exc).__name__ + ": " + str(exc).splitlines()[0]
box.close()
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_sandbox_holds_when_the_worker_is_not_root() -> None:
    """In Kubernetes the worker runs as non-root: no uid switch, Landlock and seccomp still hold."""
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", NON_ROOT_SCRIPT]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": os.pathsep.join(source_roots())}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert "own-uid" not in out["layers"] and "seccomp" in out["layers"]
    assert out["uid"] == "65534"
    assert out["passwd"].startswith("CodeRaised: the code raised PermissionError")
    assert "Operation not permitted" in out["socket"]
    assert out["signal"].startswith("CodeRaised: the code raised PermissionError")
    assert out["fork"].startswith("SandboxProcessLimit")


def test_an_interrupted_call_leaves_no_process_and_the_next_call_works(store: ImageStore,
                                                                      sandbox_settings: VisionSettings) -> None:
    """Celery's soft time limit raises inside the worker mid-call; the sandbox must not fall out of step."""
    from celery.exceptions import SoftTimeLimitExceeded

    def soft_limit(*_: object) -> None:
        raise SoftTimeLimitExceeded()

    box = Sandbox()
    cfg = sandbox_settings.model_copy(update={"sandbox_wall_s": 30.0})
    previous = signal.signal(signal.SIGALRM, soft_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(SoftTimeLimitExceeded):
            run_code("import os, time\nif os.fork() == 0:\n    time.sleep(60)\ntime.sleep(60)", ToolContext(),
                     store, box, cfg)
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert no_sandbox_process_within(2)
        assert run_code("6 * 7", ToolContext(), store, box, cfg).text == "42"
    finally:
        signal.signal(signal.SIGALRM, previous)
        box.close()
