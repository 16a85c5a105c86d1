"""NetworkPolicies: default deny, every connection the settings need allowed, nothing more.

The flows that must work are derived from the settings (each in-cluster URL a process is given),
so a new dependency without a policy fails here, not in the cluster.
"""

from __future__ import annotations

import itertools

from tests.k8s import netpol
from tests.k8s.manifests import Rendered
from tests.k8s.test_keda import WORKER_QUEUES
from tests.k8s.test_references import in_cluster_endpoints

TCP_PORTS_OF_INTEREST = (53, 80, 443, 4317, 4318, 5432, 6379, 8000, 8001, 8002, 8080, 8081, 8082, 8090, 9090, 9100,
                         9200, 16686, 50051)


def _service_backend(rendered: Rendered, host: str, port: int) -> tuple[list[netpol.Endpoint], int]:
    service = rendered.one("Service", host.split(".")[0])
    spec_port = next(p for p in service["spec"]["ports"] if p["port"] == port)
    pods = netpol.pods(rendered)
    backends = [pods[w["metadata"]["name"]] for w in rendered.pods_selected_by(service["spec"]["selector"])]
    target = spec_port.get("targetPort", port)
    number = target if isinstance(target, int) else backends[0].ports[target]
    return backends, number


def test_everything_is_denied_by_default(rendered: Rendered) -> None:
    deny = [p for p in rendered.of_kind("NetworkPolicy")
            if p["spec"]["podSelector"] == {} and sorted(p["spec"]["policyTypes"]) == ["Egress", "Ingress"]
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert len(deny) == 1


# Which in-cluster URL setting a process uses is declared on its pod by a role label; every pod
# receives all settings (one ConfigMap), but only declared users get the network path.
USES = {
    "TOOLFABRIC_REDIS_URL": "toolfabric.io/redis-client",
    "TOOLFABRIC_ELASTICSEARCH_URL": "toolfabric.io/elasticsearch-client",
    "TOOLFABRIC_MODEL_TRITON_URL": "toolfabric.io/model-client",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "toolfabric.io/telemetry-client",
    "TOOLFABRIC_STORE_URL": "toolfabric.io/store-client",
}
# What each process uses (gateway/server.py: Redis + Triton; search and fetch: the cache store on
# Elasticsearch; fetch: Triton for summaries; every process: the broker and tracing).
DECLARED = {
    "gateway": {"TOOLFABRIC_REDIS_URL", "TOOLFABRIC_MODEL_TRITON_URL", "OTEL_EXPORTER_OTLP_ENDPOINT",
                "TOOLFABRIC_STORE_URL"},
    "worker-vision": {"TOOLFABRIC_REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"},
    "worker-search": {"TOOLFABRIC_REDIS_URL", "TOOLFABRIC_ELASTICSEARCH_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"},
    "worker-fetch": {"TOOLFABRIC_REDIS_URL", "TOOLFABRIC_ELASTICSEARCH_URL", "TOOLFABRIC_MODEL_TRITON_URL",
                     "OTEL_EXPORTER_OTLP_ENDPOINT"},
}


def test_each_process_declares_the_dependencies_it_uses(rendered: Rendered) -> None:
    for workload, settings_used in DECLARED.items():
        labels = rendered.workload(workload)["spec"]["template"]["metadata"]["labels"]
        declared = {key for key, label in USES.items() if labels.get(label) == "true"}
        assert declared == settings_used, workload


def test_every_connection_the_settings_need_is_allowed(rendered: Rendered) -> None:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    blocked = []
    for c in rendered.containers(init=False):
        client = pods[c.workload["metadata"]["name"]]
        if not policies.allows(client, netpol.KUBE_DNS, 53, "UDP"):
            blocked.append(f"{client.name} -> DNS")
        for key, (host, port) in in_cluster_endpoints(rendered, rendered.env(c)).items():
            if key not in USES or client.labels.get(USES[key]) != "true":
                continue
            backends, target_port = _service_backend(rendered, host, port)
            blocked += [f"{client.name} -> {b.name}:{target_port} ({key})" for b in backends
                        if not policies.allows(client, b, target_port)]
    assert blocked == []


def test_clients_anywhere_reach_the_gateway_and_nothing_else(rendered: Rendered) -> None:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    reachable = {(name, port) for (name, pod), port in itertools.product(pods.items(), TCP_PORTS_OF_INTEREST)
                 if policies.allows(netpol.OTHER_APP, pod, port)}
    assert reachable == {("gateway", 50051), ("gateway", 8090), ("gateway", 8080), ("gateway", 8081),
                         ("gateway", 8082)}


def test_metrics_are_scrapable_from_the_monitoring_namespace(rendered: Rendered) -> None:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    for name, pod in pods.items():
        if "metrics" in pod.ports:
            assert policies.allows(netpol.PROMETHEUS, pod, pod.ports["metrics"]), name


def test_only_search_and_fetch_reach_the_internet(rendered: Rendered) -> None:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    online = {name for name, pod in pods.items()
              if any(policies.allows(pod, site, port)
                     for site in (netpol.PUBLIC_SITE, netpol.PUBLIC_SITE_V6) for port in (80, 443))}
    expected = {"worker-search", "worker-fetch"}
    if rendered.name == "all-components":  # with k8s/components/gateway-image-urls
        expected.add("gateway")
    assert online == expected
    for name in online:  # HTTP(S) only
        assert not policies.allows(pods[name], netpol.PUBLIC_SITE, 25)
        assert not policies.allows(pods[name], netpol.PUBLIC_SITE, 22)


def test_nothing_reaches_cloud_metadata_or_private_addresses(rendered: Rendered) -> None:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    leaks = [f"{name} -> {dst.name}:{port}" for name, pod in pods.items()
             for dst in [netpol.CLOUD_METADATA, *netpol.PRIVATE_HOSTS] for port in (80, 443, 6379, 9200)
             if policies.allows(pod, dst, port)]
    assert leaks == []


def _destinations(rendered: Rendered, source: str) -> set[str]:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    others = [*pods.values(), netpol.KUBE_DNS, netpol.KEDA_OPERATOR, netpol.PROMETHEUS, netpol.OTHER_APP,
              netpol.PUBLIC_SITE, netpol.PUBLIC_SITE_V6, netpol.CLOUD_METADATA, *netpol.PRIVATE_HOSTS]
    return {dst.name for dst in others for port in TCP_PORTS_OF_INTEREST
            if dst.name != source and (policies.allows(pods[source], dst, port)
                                       or policies.allows(pods[source], dst, port, "UDP"))}


def test_the_vision_sandbox_reaches_only_the_broker(rendered: Rendered) -> None:
    # Redis (the Celery broker it consumes from; the cache Redis for its images), DNS to find them, the trace
    # backend. No internet, no Triton, no Elasticsearch, no other fabric pod, no Kubernetes API.
    assert _destinations(rendered, "worker-vision") <= {"redis", "redis-cache", "kube-dns", "jaeger",
                                                        "otel-collector"}
    assert "redis" in _destinations(rendered, "worker-vision")


def test_backing_services_reach_nothing_but_dns(rendered: Rendered) -> None:
    for name in ("redis", "redis-cache", "triton", "elasticsearch", "jaeger"):
        if name in netpol.pods(rendered):
            assert _destinations(rendered, name) <= {"kube-dns"}, name


def test_redis_and_elasticsearch_are_reachable_only_from_the_fabric(rendered: Rendered) -> None:
    policies, pods = netpol.Policies(rendered), netpol.pods(rendered)
    candidates = [*pods.values(), netpol.KEDA_OPERATOR, netpol.PROMETHEUS, netpol.OTHER_APP]
    redis_clients = {c.name for c in candidates if c.name != "redis" and policies.allows(c, pods["redis"], 6379)}
    expected = {"gateway", *(f"worker-{q}" for q in WORKER_QUEUES)}
    if rendered.of_kind("ScaledObject"):
        expected.add("keda-operator")
    assert redis_clients == expected
    # The cache Redis (image blobs, hot cache): the fabric's own pods only, not KEDA (queues are in the broker's).
    cache_clients = {c.name for c in candidates
                     if c.name != "redis-cache" and policies.allows(c, pods["redis-cache"], 6379)}
    assert cache_clients == {"gateway", *(f"worker-{q}" for q in WORKER_QUEUES)}
    if "elasticsearch" in pods:
        es_clients = {c.name for c in candidates
                      if c.name != "elasticsearch" and policies.allows(c, pods["elasticsearch"], 9200)}
        assert es_clients == {"worker-search", "worker-fetch"}


def test_the_evaluator_denies_by_default_and_honours_rules(dev: Rendered) -> None:
    policies, pods = netpol.Policies(dev), netpol.pods(dev)
    assert policies.allows(pods["gateway"], pods["redis"], 6379)
    assert not policies.allows(pods["gateway"], pods["redis"], 6380)
    assert not policies.allows(pods["triton"], pods["redis"], 6379)
    assert not policies.allows(pods["worker-vision"], netpol.PUBLIC_SITE, 443)
    assert policies.allows(pods["worker-fetch"], netpol.PUBLIC_SITE, 443)


def test_the_collector_can_forward_to_jaeger(gpu: Rendered) -> None:
    policies, pods = netpol.Policies(gpu), netpol.pods(gpu)
    assert policies.allows(pods["otel-collector"], pods["jaeger"], 4317)
    assert policies.allows(pods["gateway"], pods["otel-collector"], 4317)
