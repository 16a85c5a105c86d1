"""A real `vllm serve` (the engine venv's, CPU) serving a tiny checkpoint, as a team's own OpenAI-compatible server
would: what tests/model/test_completions_endpoint.py and bench/model.py point the fabric's completions backend at."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from types import TracebackType

from toolfabric_server.devstack.processes import Child, free_port, wait_until
from toolfabric_server.model.engine_venv import engine_python, engine_venv
from toolfabric_server.model.settings import ModelSettings

SERVED = "tiny-qwen3"


class VllmServe:
    """`vllm serve CHECKPOINT` on a free port; `url` is its OpenAI base URL (…/v1), `running()` its own gauge."""

    def __init__(self, checkpoint: Path, workdir: Path, start_timeout_s: float = 900.0) -> None:
        self.checkpoint, self.workdir, self.start_timeout_s = checkpoint, workdir, start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._child: Child | None = None

    @property
    def log(self) -> Path:
        assert self._child is not None
        return self._child.log

    def __enter__(self) -> VllmServe:
        env = dict(os.environ) | {"VLLM_CPU_KVCACHE_SPACE": "1", "LC_ALL": "C.UTF-8"}
        # The same engine arguments as the Triton vLLM engine (devstack/neural_models.engine_args):
        # eager, no chunked prefill (vllm-cpu 0.32's engine core dies prefilling a seeded request in chunks).
        # `vllm serve`'s own server module: the `vllm` script of the vllm-cpu distribution dies asking the package
        # metadata for a distribution named "vllm".
        python = engine_python(engine_venv(ModelSettings()))
        argv = [str(python), "-W", "ignore::DeprecationWarning", "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.checkpoint), "--served-model-name", SERVED,
                "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "bfloat16", "--enforce-eager",
                "--max-model-len", "16384", "--no-enable-chunked-prefill", "--max-num-batched-tokens", "16384",
                "--seed", "0", "--enable-log-requests"]  # it logs "Aborted request(s)": the cancel test reads it
        self._child = Child(f"vllm-serve-{self.port}", argv, self.workdir, env=env)
        try:
            wait_until(lambda: SERVED in _get(f"{self.url}/models"), self.start_timeout_s, "vllm serve",
                       self._child.proc, self._child.log)
        except BaseException:
            self._child.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._child is not None:
            self._child.stop(timeout_s=30)

    def running(self) -> float:
        """vLLM's own count of requests it is generating now (gauge vllm:num_requests_running)."""
        text = _get(f"http://127.0.0.1:{self.port}/metrics")
        match = re.search(r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+-]+)$", text, re.MULTILINE)
        if match is None:
            raise AssertionError("vllm serve publishes no vllm:num_requests_running gauge")
        return float(match.group(1))

    def complete(self, body: dict[str, object]) -> dict[str, object]:
        """One request without streaming, straight to the server (what the fabric is compared against)."""
        request = urllib.request.Request(f"{self.url}/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read().decode()
