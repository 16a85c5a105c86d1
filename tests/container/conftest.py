"""The containerised stack that scripts/container-test.sh started (compose.yaml + compose.demo.yaml).

Without it (TOOLFABRIC_CONTAINER_TARGET unset, e.g. in `make test`) every test here is skipped:
`make container-test` builds the image and starts the stack first.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass

import pytest

TARGET = os.environ.get("TOOLFABRIC_CONTAINER_TARGET", "")
SERVICES = ("redis", "triton", "worker-vision", "worker-search", "worker-fetch", "gateway", "demo-site")

collect_ignore_glob = [] if TARGET else ["test_*.py"]


@dataclass
class Stack:
    engine: str
    project: str
    target: str
    containers: dict[str, str]  # compose service -> container name

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, check=check, timeout=timeout)

    def inspect(self, service: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.run("inspect", self.containers[service]).stdout)[0]

    def healthy(self, service: str) -> bool:
        if self.engine == "podman":
            # Podman runs health checks from systemd timers; without systemd (CI sandboxes) run the
            # container's configured check on demand: the same command either way.
            return self.run("healthcheck", "run", self.containers[service], check=False).returncode == 0
        return self.inspect(service)["State"].get("Health", {}).get("Status") == "healthy"


def _containers(engine: str, project: str) -> dict[str, str]:
    out = subprocess.run([engine, "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                          "--format", "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    names = out.split()
    found = {}
    for service in (*SERVICES, "index-demo"):
        # docker compose: project-service-1; podman-compose: project_service_1
        match = [n for n in names if n in (f"{project}-{service}-1", f"{project}_{service}_1")]
        if match:
            found[service] = match[0]
    return found


@pytest.fixture(scope="session")
def stack() -> Stack:
    engine = os.environ["TOOLFABRIC_CONTAINER_ENGINE"]
    project = os.environ["TOOLFABRIC_CONTAINER_PROJECT"]
    s = Stack(engine, project, TARGET, _containers(engine, project))
    missing = set(SERVICES) - set(s.containers)
    assert not missing, f"compose did not start {sorted(missing)}"
    deadline = time.monotonic() + 300
    waiting = set(SERVICES)
    while waiting and time.monotonic() < deadline:
        waiting = {name for name in waiting if not s.healthy(name)}
        # A container that exited is not going to become healthy: fail now, with its reason.
        for name in waiting:
            state = s.inspect(name)["State"]
            if not state["Running"]:
                logs = s.run("logs", "--tail", "5", s.containers[name], check=False)
                raise AssertionError(f"{name} exited ({state.get('ExitCode')}): {logs.stdout}{logs.stderr}")
        time.sleep(2)
    assert not waiting, f"not healthy after 300 s: {sorted(waiting)}"
    # The one-shot indexer of the demo corpus (worker-search's init container in Kubernetes).
    code = s.run("wait", s.containers["index-demo"], timeout=300).stdout.strip()
    assert code == "0", s.run("logs", s.containers["index-demo"], check=False).stderr
    return s
