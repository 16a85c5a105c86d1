"""Runs a real Triton Inference Server on a machine without a GPU (embedded default, tests).

The server binary, python backend and backend stubs ship in the `nvidia-pytriton` wheel. The stub
embeds the system libpython and takes its standard library and imports from the first `python3`
on PATH, so the server runs with this virtual environment's bin/ first on PATH (the venv must be
made from the system python, see shared/notes/triton-on-cpu.md).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.devstack.processes import (
    PORT_TAKEN,
    Child,
    children_of,
    free_port,
    log_says,
    source_roots,
    wait_until,
)

REPOSITORY = Path(__file__).resolve().parents[1] / "model" / "repository"
CPU_MODELS = ("toolfabric_baseline",)


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ConfigurationError("nvidia-pytriton is not installed: it carries the Triton server binary") from exc
    return Path(pytriton.__file__).resolve().parent


class TritonServer:
    """`tritonserver` with the CPU models, on free ports; `grpc_url` for clients."""

    def __init__(self, workdir: Path, models: tuple[str, ...] = CPU_MODELS,
                 repositories: tuple[Path, ...] = (REPOSITORY,), start_timeout_s: float = 120.0) -> None:
        self.workdir = workdir
        self.models = models
        self.repositories = repositories
        self.start_timeout_s = start_timeout_s  # neural engines take minutes to load on a busy CPU
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self._child: Child | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backend_dir(self) -> Path:
        """A backend directory of our own: the python backend plus the stub for this Python."""
        pytriton = _pytriton_dir() / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = pytriton / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise ConfigurationError(f"no Triton python backend stub for Python {version} in nvidia-pytriton")
        target = self.workdir / "backends" / "python"
        if not target.exists():
            shutil.copytree(pytriton / "backends" / "python", target)
            shutil.copy2(stub, target / "triton_python_backend_stub")
        return target.parent

    def start(self, timeout_s: float | None = None) -> TritonServer:
        if self._child is not None:  # already running (e.g. `with TritonServer(...).start()`)
            return self
        for attempt in range(3):
            try:
                self._start_once(timeout_s or self.start_timeout_s)
                return self
            except RuntimeError:
                # A port chosen free can be taken before Triton binds it (several stacks on one machine).
                lost = self._child is not None and log_says(self._child.log, *PORT_TAKEN)
                self.stop()
                if not lost or attempt == 2:
                    raise
                self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        return self

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    @property
    def pid(self) -> int | None:
        """The process group leader (the subreaper): killing its group stops everything."""
        return self._child.proc.pid if self._child else None

    @property
    def server_pid(self) -> int | None:
        """The tritonserver process itself (the subreaper's child)."""
        if self._child is None:
            return None
        kids = children_of(self._child.proc.pid)
        return kids[0] if kids else None

    def _start_once(self, timeout_s: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pytriton = _pytriton_dir()
        libs = pytriton.parent / "nvidia_pytriton.libs"
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
        # The models import the fabric's own modules (the baseline policy).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*source_roots(), env.get("PYTHONPATH")]))
        argv = [
            # Under a subreaper: no backend stub outlives the server, even a SIGKILLed one.
            sys.executable, "-m", "toolfabric_server.devstack.subreaper",
            str(pytriton / "tritonserver" / "bin" / "tritonserver"),
            *[f"--model-repository={r}" for r in self.repositories],
            f"--backend-directory={self._backend_dir()}",
            "--model-control-mode=explicit",
            *[f"--load-model={m}" for m in self.models],
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            # Loopback only: the embedded server is for this machine.
            "--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1",
            "--allow-http=true",
            "--log-verbose=0",
            "--exit-on-error=true",
            # On SIGTERM, in-flight requests get this long before Triton exits (its default is 30 s).
            "--exit-timeout-secs=2",
        ]
        self._child = Child(f"triton-{self.grpc_port}", argv, self.workdir, env=env)
        wait_until(self._ready, timeout_s, "tritonserver", self._child.proc, self._child.log)

    def _ready(self) -> bool:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            return all(client.is_model_ready(m) for m in self.models)
        finally:
            client.close()

    def stop(self) -> None:
        if self._child:
            self._child.stop(timeout_s=8)
            self._child = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
