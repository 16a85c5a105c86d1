"""Invariants of every pod: probes, resources, hardening, identities, volumes, images."""

from __future__ import annotations

import tomllib
from typing import Any

from kubernetes.utils import parse_quantity

from tests.k8s.manifests import APP_IMAGE, ROOT, Rendered, image_name, image_tag


def _violations(rendered: Rendered, check: Any, *, init: bool = True) -> list[str]:
    return [f"{c.where}: {problem}" for c in rendered.containers(init=init) for problem in check(c.spec)]


def test_every_container_has_readiness_and_liveness_probes_that_differ(rendered: Rendered) -> None:
    def check(spec: dict[str, Any]) -> list[str]:
        problems = [f"no {p}" for p in ("readinessProbe", "livenessProbe") if p not in spec]
        if not problems and spec["readinessProbe"] == spec["livenessProbe"]:
            problems.append("readiness is the same probe as liveness")
        return problems

    assert _violations(rendered, check, init=False) == []


def test_every_container_has_cpu_and_memory_requests_and_limits(rendered: Rendered) -> None:
    def check(spec: dict[str, Any]) -> list[str]:
        resources = spec.get("resources", {})
        problems = []
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"no {kind}.{resource}")
        for resource, request in resources.get("requests", {}).items():
            limit = resources.get("limits", {}).get(resource)
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                problems.append(f"{resource} request {request} above its limit {limit}")
        return problems

    assert _violations(rendered, check) == []


HARDENED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}


def test_every_container_is_hardened(rendered: Rendered) -> None:
    def check(spec: dict[str, Any]) -> list[str]:
        sc = spec.get("securityContext", {})
        problems = [f"securityContext.{k} must be {v}" for k, v in HARDENED.items() if sc.get(k) is not v]
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            problems.append("capabilities must drop ALL and add nothing")
        if sc.get("privileged"):
            problems.append("privileged")
        if sc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append("seccompProfile must be RuntimeDefault or Localhost")
        if sc.get("runAsUser") == 0:
            problems.append("runs as root")
        return problems

    assert _violations(rendered, check) == []


def test_every_pod_is_hardened_and_has_its_own_tokenless_service_account(rendered: Rendered) -> None:
    problems = []
    for w in rendered.workloads:
        name, pod = w["metadata"]["name"], w["spec"]["template"]["spec"]
        sc = pod.get("securityContext", {})
        if sc.get("runAsNonRoot") is not True or not sc.get("runAsUser"):
            problems.append(f"{name}: pod must set runAsNonRoot and a non-zero runAsUser")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccompProfile must be RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: automountServiceAccountToken must be false")
        if pod.get("enableServiceLinks") is not False:
            # Service links inject <SERVICE>_PORT=tcp://... variables; a Service named
            # toolfabric-gateway would shadow TOOLFABRIC_GATEWAY_PORT.
            problems.append(f"{name}: enableServiceLinks must be false")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host):
                problems.append(f"{name}: {host}")
        account = rendered.get("ServiceAccount", pod.get("serviceAccountName", ""))
        if account is None:
            problems.append(f"{name}: serviceAccountName {pod.get('serviceAccountName')!r} is not rendered")
        elif account.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: its ServiceAccount mounts a token")
    assert problems == []


def test_writable_paths_are_explicit_bounded_volumes(rendered: Rendered) -> None:
    problems = []
    for w in rendered.workloads:
        pod = w["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        mounted = set()
        for c in pod.get("initContainers", []) + pod["containers"]:
            for mount in c.get("volumeMounts", []):
                mounted.add(mount["name"])
                if mount["name"] not in volumes and mount["name"] not in templates:
                    problems.append(f"{w['metadata']['name']}/{c['name']}: mounts undefined volume {mount['name']}")
        for name, volume in volumes.items():
            if "hostPath" in volume:
                problems.append(f"{w['metadata']['name']}: hostPath volume {name}")
            if "emptyDir" in volume and "sizeLimit" not in (volume["emptyDir"] or {}):
                problems.append(f"{w['metadata']['name']}: emptyDir {name} has no sizeLimit")
            if name not in mounted:
                problems.append(f"{w['metadata']['name']}: volume {name} is never mounted")
    assert problems == []


def test_memory_backed_volumes_fit_in_the_memory_limit(rendered: Rendered) -> None:
    problems = []
    for c in rendered.containers():
        volumes = {v["name"]: v for v in c.pod.get("volumes", [])}
        in_memory = sum(
            parse_quantity(volumes[m["name"]]["emptyDir"]["sizeLimit"])
            for m in c.spec.get("volumeMounts", [])
            if (volumes.get(m["name"], {}).get("emptyDir") or {}).get("medium") == "Memory"
        )
        if in_memory and in_memory >= parse_quantity(c.spec["resources"]["limits"]["memory"]):
            problems.append(f"{c.where}: memory-backed volumes ({in_memory}) do not fit its memory limit")
    assert problems == []


def test_every_image_is_pinned_by_tag(rendered: Rendered) -> None:
    unpinned = [f"{c.where}: {c.spec['image']}" for c in rendered.containers()
                if image_tag(c.spec["image"]) in (None, "latest")]
    assert unpinned == []


def test_the_toolfabric_image_tag_is_the_project_version(rendered: Rendered) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    tags = {image_tag(c.spec["image"]) for c in rendered.containers() if image_name(c.spec["image"]) == APP_IMAGE}
    assert tags == {version}


def test_toolfabric_image_pods_run_as_the_dockerfile_user(rendered: Rendered) -> None:
    dockerfile_user = next(line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
                           if line.startswith("USER "))
    uid = int(dockerfile_user.split(":")[0])
    wrong = [c.where for c in rendered.containers(init=False)
             if image_name(c.spec["image"]) == APP_IMAGE
             and c.pod["securityContext"]["runAsUser"] != uid]
    assert wrong == []
