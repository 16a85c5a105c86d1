"""What each service needs from its manifests, and what each overlay promises."""

from __future__ import annotations

import itertools
import json
import re

from kubernetes.utils import parse_quantity

from tests.k8s.manifests import APP_IMAGE, ROOT, Rendered, image_name, parse_bytes
from tests.k8s.test_keda import WORKER_QUEUES
from tests.k8s.test_settings import environment
from toolfabric_server.common import settings
from toolfabric_server.gateway import settings as gateway_settings
from toolfabric_server.model import settings as model_settings
from toolfabric_server.store import settings as store_settings
from toolfabric_server.tools.vision.settings import VisionSettings

REPOSITORY = ROOT / "server" / "toolfabric_server" / "model" / "repository"


def test_gateway_probes_use_grpc_health_on_the_serving_port(rendered: Rendered) -> None:
    c = rendered.container("gateway")
    env = rendered.env(c)
    # With TLS on the serving port, probes (which cannot speak TLS) use the plaintext health-only port.
    name = "grpc-health" if env.get("TOOLFABRIC_TLS_CERT_FILE") else "grpc"
    port = next(p["containerPort"] for p in c.spec["ports"] if p["name"] == name)
    if name == "grpc-health":
        assert int(env["TOOLFABRIC_TLS_HEALTH_PORT"]) == port
    readiness, liveness = c.spec["readinessProbe"], c.spec["livenessProbe"]
    assert readiness["grpc"]["port"] == liveness["grpc"]["port"] == port
    # Liveness asks about the server (""), readiness about the Fabric service: draining or lost
    # dependencies take the pod out of the Service without restarting it.
    assert liveness["grpc"].get("service", "") == ""
    assert readiness["grpc"]["service"] == "toolfabric.v1.Fabric"
    proto = (ROOT / "protos" / "toolfabric" / "v1" / "fabric.proto").read_text()
    assert "package toolfabric.v1;" in proto and re.search(r"^service Fabric\b", proto, re.M)


def test_every_deployment_requires_api_keys_and_serves_the_http_api(rendered: Rendered) -> None:
    c = rendered.container("gateway")
    env = rendered.env(c)
    assert gateway_settings.AuthSettings.model_validate({"required": env["TOOLFABRIC_AUTH_REQUIRED"]}).required
    assert "TOOLFABRIC_STORE_URL" in env  # keys live in the shared durable store, not on a pod's disk
    service = rendered.one("Service", "gateway")
    assert {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP",
            "appProtocol": "http"} in service["spec"]["ports"]


def test_the_step_and_mcp_doors_are_exposed_with_the_same_policy(rendered: Rendered) -> None:
    c = rendered.container("gateway")
    env = rendered.env(c)
    ports = {p["name"]: p["containerPort"] for p in c.spec["ports"]}
    assert int(env["TOOLFABRIC_STEP_HTTP_PORT"]) == ports["step-http"]
    assert int(env["TOOLFABRIC_MCP_HTTP_PORT"]) == ports["mcp-http"]
    service = {p["name"]: p for p in rendered.one("Service", "gateway")["spec"]["ports"]}
    assert service["step-http"]["targetPort"] == "step-http" and service["mcp-http"]["targetPort"] == "mcp-http"
    # One gateway process serves every door: the same keys (auth required), TLS settings and probes hold for all.
    assert gateway_settings.AuthSettings.model_validate({"required": env["TOOLFABRIC_AUTH_REQUIRED"]}).required
    assert c.spec["readinessProbe"]["grpc"]["service"] == "toolfabric.v1.Fabric"


def test_gateway_tls_comes_from_the_tls_secret(gpu: Rendered) -> None:
    c = gpu.container("gateway")
    env = gpu.env(c)
    mounts = {m["name"]: m["mountPath"] for m in c.spec["volumeMounts"]}
    volume = next(v for v in gpu.one("Deployment", "gateway")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "toolfabric-tls"
    assert env["TOOLFABRIC_TLS_CERT_FILE"] == f"{mounts['tls']}/tls.crt"
    assert env["TOOLFABRIC_TLS_KEY_FILE"] == f"{mounts['tls']}/tls.key"


def test_gateway_has_service_hpa_and_pdb(rendered: Rendered) -> None:
    assert rendered.get("Service", "gateway") is not None
    hpa = rendered.one("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert rendered.get("PodDisruptionBudget", "gateway") is not None


def test_one_worker_deployment_per_celery_queue(rendered: Rendered) -> None:
    workers = {c.spec["args"][2]: c for c in rendered.containers(init=False)
               if c.spec.get("args", [])[:2] == ["toolfabric", "worker"]}
    assert sorted(workers) == sorted(WORKER_QUEUES)
    for queue, c in workers.items():
        assert c.workload["kind"] == "Deployment"
        assert c.workload["metadata"]["name"] == f"worker-{queue}"
        assert c.pod_labels["toolfabric.io/queue"] == queue
        # Readiness is the age of the heartbeat file the worker's consumer refreshes while connected.
        env = rendered.env(c)
        beat, interval = env["TOOLFABRIC_WORKER_HEARTBEAT_FILE"], float(env["TOOLFABRIC_WORKER_HEARTBEAT_INTERVAL_S"])
        probe = " ".join(c.spec["readinessProbe"]["exec"]["command"])
        assert f"stat -c %Y {beat}" in probe, "readiness checks the file this worker's heartbeat writes"
        max_age = int(probe.rsplit("-lt", 1)[1])
        assert 3 * interval <= max_age <= 5 * interval, "a stale heartbeat is a few missed beats, not one"


def test_vision_memory_limit_holds_its_sandboxes(rendered: Rendered) -> None:
    c = rendered.container("worker-vision")
    with environment(rendered.env(c)):
        per_sandbox = VisionSettings().sandbox_memory_mb * 2**20
        concurrency = settings.worker().concurrency
    worker_overhead = 512 * 2**20
    assert parse_quantity(c.spec["resources"]["limits"]["memory"]) >= concurrency * per_sandbox + worker_overhead


def test_only_search_carries_the_provider_key_and_only_gateway_and_search_the_blob_url_key(rendered: Rendered) -> None:
    holders: dict[str, set[str]] = {}
    for c in rendered.containers():
        for var in c.spec.get("env", []):
            key = var.get("valueFrom", {}).get("secretKeyRef", {}).get("key")
            if key:
                holders.setdefault(key, set()).add(c.workload["metadata"]["name"])
    assert holders["serper-api-key"] == {"worker-search"}
    assert holders["blob-url-secret"] == {"gateway", "worker-search"}


def _triton(rendered: Rendered):  # type: ignore[no-untyped-def]
    return rendered.container("triton", "triton")


def test_triton_loads_the_default_model_and_serves_the_configured_port(rendered: Rendered) -> None:
    gateway = rendered.container("gateway")
    env = rendered.env(gateway)
    model = env.get("TOOLFABRIC_MODEL_DEFAULT_MODEL", model_settings.ModelSettings().default_model)
    triton = _triton(rendered)
    args = triton.spec.get("command", []) + triton.spec["args"]
    assert f"--load-model={model}" in args
    assert (REPOSITORY / model / "config.pbtxt").exists(), f"{model} is not in {REPOSITORY}"
    grpc_port = next(p["containerPort"] for p in triton.spec["ports"] if p["name"] == "grpc")
    assert env["TOOLFABRIC_MODEL_TRITON_URL"] == f"triton:{grpc_port}"
    readiness, liveness = triton.spec["readinessProbe"]["httpGet"], triton.spec["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/v2/health/ready", "/v2/health/live")


def test_dev_runs_the_cpu_baseline_from_the_toolfabric_image(dev: Rendered) -> None:
    triton = _triton(dev)
    assert image_name(triton.spec["image"]) == APP_IMAGE
    assert triton.spec["args"][0] == "toolfabric-triton-cpu"
    assert "nvidia.com/gpu" not in triton.spec["resources"]["limits"]


def test_dev_is_one_replica_each_without_keda_or_elasticsearch(dev: Rendered) -> None:
    hpa = dev.one("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    assert all(w["spec"].get("replicas", 1) == 1 for w in dev.workloads)
    assert dev.of_kind("ScaledObject") == []
    assert dev.get("StatefulSet", "elasticsearch") is None
    settings_cm = dev.configmap_named("toolfabric-settings")["data"]
    assert "TOOLFABRIC_ELASTICSEARCH_URL" not in settings_cm, "dev uses the embedded index"
    assert json.loads(settings_cm["TOOLFABRIC_SEARCH_PROVIDERS"]) == ["local"]
    assert dev.get("Deployment", "jaeger") is not None and dev.get("StatefulSet", "redis") is not None


def test_gpu_runs_vllm_triton_on_a_gpu_node(gpu: Rendered) -> None:
    triton = _triton(gpu)
    pod = triton.pod
    release = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)-vllm-python-py3", triton.spec["image"])
    assert release, triton.spec["image"]
    # Qwen3-VL (R1V4's base) needs vLLM >= 0.11.0, first shipped in Triton 25.11 (docs/deploy.md).
    assert (int(release[1]), int(release[2])) >= (25, 11)
    resources = triton.spec["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    assert pod["nodeSelector"] or pod.get("affinity")
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    startup = triton.spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model load takes minutes"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in triton.spec["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # The weights model.json names sit on the read-only weights volume.
    model_json = json.loads((REPOSITORY / "r1v4" / "1" / "model.json").read_text())
    weights_mount = next(m for m in triton.spec["volumeMounts"] if m["name"] == "weights")
    assert weights_mount["readOnly"] is True
    assert model_json["model"].startswith(weights_mount["mountPath"] + "/")
    assert "persistentVolumeClaim" in volumes["weights"]
    repo_arg = next(a for a in triton.spec["args"] if a.startswith("--model-repository="))
    assert mounts[repo_arg.split("=", 1)[1]] == "repository"




def test_gpu_has_keda_elasticsearch_and_tracing_through_the_collector(gpu: Rendered) -> None:
    assert {s["spec"]["scaleTargetRef"]["name"] for s in gpu.of_kind("ScaledObject")} == {
        f"worker-{q}" for q in WORKER_QUEUES}
    assert gpu.one("StatefulSet", "elasticsearch")["spec"]["volumeClaimTemplates"]
    data = gpu.configmap_named("toolfabric-settings")["data"]
    assert data["TOOLFABRIC_ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert data["TOOLFABRIC_MODEL_DEFAULT_MODEL"] == "r1v4"
    collector = gpu.configmap_named("otel-collector-config")["data"]["config.yaml"]
    assert "endpoint: jaeger:4317" in collector


def _redis_settings(rendered: Rendered) -> dict[str, str]:
    conf = rendered.configmap_named("redis-config")["data"]["redis.conf"]
    values = {}
    for line in conf.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            values[key] = value
    args = rendered.container("redis").spec["args"]
    for flag, value in itertools.pairwise(args):
        if flag.startswith("--"):
            values[flag[2:]] = value
    return values


def test_redis_is_a_persistent_broker_that_never_evicts(rendered: Rendered) -> None:
    sts = rendered.one("StatefulSet", "redis")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    values = _redis_settings(rendered)
    assert values["maxmemory-policy"] == "noeviction"
    assert values["appendonly"] == "yes" and values["dir"] == "/data"
    limit = parse_quantity(rendered.container("redis").spec["resources"]["limits"]["memory"])
    assert parse_bytes(values["maxmemory"]) <= 0.8 * int(limit), "room for fork/AOF rewrite"
    assert values["requirepass"] == "$(REDISCLI_AUTH)", "the password comes from the Secret"


def test_dev_search_and_fetch_share_the_embedded_index_volume(dev: Rendered) -> None:
    claims = {}
    for name in ("worker-search", "worker-fetch"):
        c = dev.container(name)
        data_dir = dev.env(c)["TOOLFABRIC_DATA_DIR"]
        mount = next(m for m in c.spec["volumeMounts"] if m["mountPath"] == data_dir)
        volume = next(v for v in c.pod["volumes"] if v["name"] == mount["name"])
        claims[name] = volume["persistentVolumeClaim"]["claimName"]
        # ReadWriteOnce: both pods must land on the node that has the volume.
        term = c.pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= c.pod_labels.items()
    assert len(set(claims.values())) == 1
    assert dev.get("PersistentVolumeClaim", claims["worker-search"]) is not None


def test_dev_serves_and_indexes_the_demo_corpus_where_fetch_may_read_it(dev: Rendered) -> None:
    from tests.k8s import netpol

    service = dev.one("Service", "demo-site")
    port = service["spec"]["ports"][0]["port"]
    search = dev.container("worker-search")
    index = next(c for c in search.pod["initContainers"] if c["name"] == "index-demo")
    base_url = index["args"][index["args"].index("--base-url") + 1]
    assert base_url == ("http://demo-site/" if port == 80 else f"http://demo-site:{port}/")
    data_mount = next(m for m in search.spec["volumeMounts"] if m["name"] == "data")
    assert data_mount in index["volumeMounts"], "indexes into the volume search reads"
    fetch_env = dev.env(dev.container("worker-fetch"))
    assert f"demo-site:{port}" in json.loads(fetch_env["TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST"])
    assert port in json.loads(fetch_env.get("TOOLFABRIC_FETCH_ALLOWED_PORTS", "[80, 443]"))
    policies, pods = netpol.Policies(dev), netpol.pods(dev)
    site = pods["demo-site"]
    assert policies.allows(pods["worker-fetch"], site, site.ports["http"])
    assert not policies.allows(pods["worker-vision"], site, site.ports["http"])
    assert (ROOT / "toolfabric" / "demo" / "site" / "index.html").exists()


def _store_images_volume(rendered: Rendered) -> dict:
    c = rendered.container("gateway")
    images_dir = rendered.env(c)["TOOLFABRIC_STORE_IMAGES_DIR"]
    mount = next(m for m in c.spec["volumeMounts"] if images_dir.startswith(m["mountPath"] + "/"))
    volume = next(v for v in c.pod["volumes"] if v["name"] == mount["name"])
    return rendered.one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def test_dev_stores_trajectories_in_the_in_cluster_postgres(dev: Rendered) -> None:
    c = dev.container("gateway")
    url = dev.env(c)["TOOLFABRIC_STORE_URL"]
    assert url.startswith("postgresql+psycopg://toolfabric:") and "@postgres:5432/toolfabric" in url
    with environment(dev.env(c)):
        assert store_settings.store().url.get_secret_value() == url  # a secret: never printed
    db = dev.container("postgres")
    assert db.workload["kind"] == "StatefulSet"
    assert {e["name"]: e.get("value") for e in db.spec["env"]}["POSTGRES_DB"] == "toolfabric"
    assert _store_images_volume(dev)["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_gpu_takes_the_store_url_from_the_secret_and_shares_images_across_replicas(gpu: Rendered) -> None:
    c = gpu.container("gateway")
    ref = next(e for e in c.spec["env"] if e["name"] == "TOOLFABRIC_STORE_URL")
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "toolfabric-secrets", "key": "store-url"}
    assert gpu.get("StatefulSet", "postgres") is None
    # Several gateway replicas (HPA): every one must read every trajectory's images.
    assert _store_images_volume(gpu)["spec"]["accessModes"] == ["ReadWriteMany"]
    assert float(gpu.env(c)["TOOLFABRIC_STORE_RETENTION_DAYS"]) > 0
