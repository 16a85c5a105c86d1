"""Every name the manifests use resolves: Secrets, ConfigMaps, PVCs, Services, scale targets, URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.k8s.manifests import SECRET_NAME, SECRET_STANDIN, TLS_SECRET, Rendered


def _secret_ref(rendered: Rendered, name: str, key: str | None, where: str) -> list[str]:
    tls_name, tls_keys = TLS_SECRET
    if name == tls_name:  # the gateway's certificate: only the standard keys of a kubernetes.io/tls Secret
        return [] if key is None or key in tls_keys else [f"{where}: {tls_name} has only {sorted(tls_keys)}"]
    if name != SECRET_NAME:
        return [f"{where}: references Secret {name}; the fabric has one Secret, {SECRET_NAME} (and {tls_name})"]
    if key is not None and key not in rendered.secret_keys:
        return [f"{where}: Secret key {key} is not listed in k8s/secrets/secrets.env.example"]
    return []


def _configmap_ref(rendered: Rendered, name: str, key: str | None, where: str) -> list[str]:
    cm = rendered.get("ConfigMap", name)
    if cm is None:
        return [f"{where}: ConfigMap {name} is not rendered"]
    if key is not None and key not in cm.get("data", {}):
        return [f"{where}: ConfigMap {name} has no key {key}"]
    return []


def test_every_env_reference_to_a_secret_or_configmap_key_resolves(rendered: Rendered) -> None:
    problems = []
    for c in rendered.containers():
        for var in c.spec.get("env", []):
            ref = var.get("valueFrom", {})
            where = f"{c.where} env {var['name']}"
            if "secretKeyRef" in ref:
                secret = ref["secretKeyRef"]
                problems += _secret_ref(rendered, secret["name"], secret["key"], where)
            if "configMapKeyRef" in ref:
                configmap = ref["configMapKeyRef"]
                problems += _configmap_ref(rendered, configmap["name"], configmap["key"], where)
        for source in c.spec.get("envFrom", []):
            if "configMapRef" in source:
                problems += _configmap_ref(rendered, source["configMapRef"]["name"], None, f"{c.where} envFrom")
            if "secretRef" in source:
                problems += _secret_ref(rendered, source["secretRef"]["name"], None, f"{c.where} envFrom")
    assert problems == []


def test_env_expansions_only_use_variables_defined_before_them(rendered: Rendered) -> None:
    problems = [f"{c.where}: {name}={value}" for c in rendered.containers()
                for name, value in rendered.env(c).items() if "$(" in value]
    assert problems == []


def test_every_volume_reference_resolves(rendered: Rendered) -> None:
    problems = []
    pvcs = {p["metadata"]["name"] for p in rendered.of_kind("PersistentVolumeClaim")}
    for w in rendered.workloads:
        for volume in w["spec"]["template"]["spec"].get("volumes", []):
            where = f"{w['metadata']['name']} volume {volume['name']}"
            if "configMap" in volume:
                for item in volume["configMap"].get("items", []) or [None]:
                    problems += _configmap_ref(rendered, volume["configMap"]["name"], item and item["key"], where)
            if "secret" in volume:
                for item in volume["secret"].get("items", []) or [None]:
                    problems += _secret_ref(rendered, volume["secret"]["secretName"], item and item["key"], where)
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim is not None and claim not in pvcs:
                problems.append(f"{where}: PersistentVolumeClaim {claim} is not rendered")
    assert problems == []


def _container_ports(workloads: list[dict[str, Any]]) -> set[int | str]:
    ports: set[int | str] = set()
    for w in workloads:
        for c in w["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                ports.add(p["containerPort"])
                if "name" in p:
                    ports.add(p["name"])
    return ports


def test_every_service_selects_pods_that_have_its_target_ports(rendered: Rendered) -> None:
    problems = []
    for service in rendered.of_kind("Service"):
        name = service["metadata"]["name"]
        pods = rendered.pods_selected_by(service["spec"].get("selector", {}))
        if not pods:
            problems.append(f"Service {name} selects no pod")
            continue
        available = _container_ports(pods)
        for port in service["spec"]["ports"]:
            if port.get("targetPort", port["port"]) not in available:
                problems.append(f"Service {name} port {port['port']}: no container port {port.get('targetPort')}")
    assert problems == []


def test_statefulsets_are_governed_by_a_headless_service(rendered: Rendered) -> None:
    for sts in rendered.of_kind("StatefulSet"):
        governing = rendered.get("Service", sts["spec"]["serviceName"])
        assert governing is not None and governing["spec"].get("clusterIP") == "None", sts["metadata"]["name"]


def test_autoscalers_and_budgets_target_rendered_workloads(rendered: Rendered) -> None:
    problems = []
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = rendered.get(ref["kind"], ref["name"])
        if target is None:
            problems.append(f"HPA {hpa['metadata']['name']}: no {ref['kind']} {ref['name']}")
        elif not 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]:
            problems.append(f"HPA {hpa['metadata']['name']}: minReplicas/maxReplicas out of order")
        elif "replicas" in target["spec"]:
            problems.append(f"{ref['name']}: sets replicas although an HPA owns the count")
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        if not rendered.pods_selected_by(pdb["spec"]["selector"]["matchLabels"]):
            problems.append(f"PDB {pdb['metadata']['name']} selects no pod")
    for scaled in rendered.of_kind("ScaledObject"):
        ref = scaled["spec"]["scaleTargetRef"]
        target = rendered.get(ref.get("kind", "Deployment"), ref["name"])
        if target is None:
            problems.append(f"ScaledObject {scaled['metadata']['name']}: no target {ref['name']}")
        elif "replicas" in target["spec"]:
            problems.append(f"{ref['name']}: sets replicas although KEDA owns the count")
    assert problems == []


def _service_port(rendered: Rendered, host: str, port: int) -> str | None:
    """Problem with an in-cluster host:port, or None when a rendered Service serves it."""
    name = host.split(".")[0]
    parts = host.split(".")
    if len(parts) > 1 and parts[1] != rendered.namespace:
        return f"{host}: namespace {parts[1]} is not the deployment's namespace {rendered.namespace}"
    service = rendered.get("Service", name)
    if service is None:
        return f"{host}: no Service {name}"
    if port not in {p["port"] for p in service["spec"]["ports"]}:
        return f"{host}: Service {name} has no port {port}"
    return None


def in_cluster_endpoints(rendered: Rendered, env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Setting name -> (host, port) for every URL setting that points inside the cluster."""
    found = {}
    for key in ("TOOLFABRIC_REDIS_URL", "TOOLFABRIC_ELASTICSEARCH_URL", "OTEL_EXPORTER_OTLP_ENDPOINT",
                "TOOLFABRIC_PUBLIC_BASE_URL", "TOOLFABRIC_MODEL_TRITON_URL", "TOOLFABRIC_SEARCH_SEARXNG_URL",
                "TOOLFABRIC_STORE_URL"):
        value = env.get(key)
        if not value or value == SECRET_STANDIN:  # unset, or all of it from a Secret: not knowable here
            continue
        parts = urlsplit(value if "://" in value else f"grpc://{value}")
        host = parts.hostname or ""
        default = {"http": 80, "https": 443, "redis": 6379}.get(parts.scheme, 0)
        if host and ("." not in host or ".svc" in host):  # a Service name, short or qualified
            found[key] = (host, parts.port or default)
    return found


def test_every_in_cluster_url_in_the_settings_points_at_a_service_port(rendered: Rendered) -> None:
    problems = []
    for c in rendered.containers(init=False):
        for key, (host, port) in in_cluster_endpoints(rendered, rendered.env(c)).items():
            problem = _service_port(rendered, host, port)
            if problem:
                problems.append(f"{c.where} {key}: {problem}")
    assert problems == []


def test_keda_reaches_redis_through_the_rendered_service(rendered: Rendered) -> None:
    for scaled in rendered.of_kind("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            host, _, port = trigger["metadata"]["address"].rpartition(":")
            assert host.split(".")[1:3] == [rendered.namespace, "svc"], "KEDA runs elsewhere: qualify the host"
            assert _service_port(rendered, host, int(port)) is None
