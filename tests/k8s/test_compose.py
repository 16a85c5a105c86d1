"""compose.yaml runs each process as its Kubernetes manifest does: same image, command, user,
read-only root with the same writable paths, and the manifest's readiness probe as its health check."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.k8s.manifests import ROOT, Container, Rendered

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DEMO = yaml.safe_load((ROOT / "compose.demo.yaml").read_text())
# compose service -> (workload, container) in the rendered overlays
SERVICES = {
    "redis": ("redis", "redis"),
    "redis-cache": ("redis-cache", "redis"),
    "triton": ("triton", "triton"),
    "worker-vision": ("worker-vision", "worker"),
    "worker-search": ("worker-search", "worker"),
    "worker-fetch": ("worker-fetch", "worker"),
    "gateway": ("gateway", "gateway"),
    "demo-site": ("demo-site", "http"),
}


def _service(name: str) -> dict[str, Any]:
    return DEMO["services"][name] if name == "demo-site" else COMPOSE["services"][name]


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match[1])


def _manifest(dev: Rendered, name: str) -> Container:
    workload, container = SERVICES[name]
    return dev.container(workload, container)


def _named_port(container: Container, port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container.spec["ports"] if p["name"] == port)


def _probe_as_command(container: Container, probe: dict[str, Any]) -> list[str]:
    """The compose health check that runs the same check as a Kubernetes probe."""
    if "grpc" in probe:
        return ["CMD", "toolfabric-probe", "grpc", str(probe["grpc"]["port"]), probe["grpc"].get("service", "")]
    if "httpGet" in probe:
        port = _named_port(container, probe["httpGet"]["port"])
        return ["CMD", "toolfabric-probe", "http", str(port), probe["httpGet"]["path"]]
    command = probe["exec"]["command"]
    assert command[:2] == ["sh", "-c"], command
    return ["CMD-SHELL", command[2]]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_health_check_is_the_manifests_readiness_probe(dev: Rendered, name: str) -> None:
    container = _manifest(dev, name)
    readiness = container.spec["readinessProbe"]
    check = _service(name)["healthcheck"]
    # compose writes a literal $ as $$
    assert [part.replace("$$", "$") for part in check["test"]] == _probe_as_command(container, readiness)
    assert _seconds(check["interval"]) == readiness.get("periodSeconds", 10)
    assert _seconds(check["timeout"]) == readiness.get("timeoutSeconds", 1) or name == "demo-site"
    assert check["retries"] == readiness.get("failureThreshold", 3)
    startup = container.spec.get("startupProbe")
    if startup:
        assert _seconds(check["start_period"]) >= startup["periodSeconds"] * startup["failureThreshold"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_runs_the_manifests_command_user_and_read_only_root(dev: Rendered, name: str) -> None:
    container = _manifest(dev, name)
    service = _service(name)
    command = container.spec.get("command", []) + container.spec.get("args", [])
    # The one $(VAR) in a manifest command is Redis's password: compose takes it from .env.
    expected = [c.replace("$(REDISCLI_AUTH)", "${TOOLFABRIC_REDIS_PASSWORD}") for c in command]
    if name.startswith("redis"):  # compose sizes each Redis by a setting (its default: the manifest's config)
        setting = {"redis": "TOOLFABRIC_REDIS_MAXMEMORY", "redis-cache": "TOOLFABRIC_CACHE_REDIS_MAXMEMORY"}[name]
        assert service["command"][-2] == "--maxmemory" and service["command"][-1].startswith(f"${{{setting}:-")
        expected += service["command"][-2:]
    assert service["command"] == expected
    pod_security = container.pod["securityContext"]
    assert service["user"] == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}"
    assert service["read_only"] is True and container.spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    # Writable: exactly the manifest's writable mounts (tmpfs or a named volume).
    writable = {m["mountPath"] for m in container.spec.get("volumeMounts", []) if not m.get("readOnly")}
    writable.discard("/dev/shm")  # compose: shm_size
    mounted = {t.split(":")[0] for t in service.get("tmpfs", [])}
    mounted |= {v.split(":")[1] for v in service.get("volumes", []) if not v.endswith(":ro")}
    assert mounted == writable


def test_compose_uses_the_manifests_image_and_settings(dev: Rendered) -> None:
    gateway = _manifest(dev, "gateway")
    assert COMPOSE["x-toolfabric"]["image"].endswith(f":-{gateway.spec['image']}}}")
    assert COMPOSE["x-toolfabric"]["env_file"] == ["k8s/base/settings.env"]
    redis = _manifest(dev, "redis")
    assert COMPOSE["services"]["redis"]["image"].endswith(f"/{redis.spec['image']}}}")
