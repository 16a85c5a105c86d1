"""A small NetworkPolicy evaluator: would this connection be allowed under the rendered policies?

Kubernetes semantics for one namespace: a pod selected by no policy of a direction is open in that
direction; once selected, a connection needs one rule (of any selecting policy) that matches the
peer and the port. A connection needs the source's egress and the destination's ingress.
Peers: podSelector (same namespace), namespaceSelector (+ podSelector), ipBlock (external IPs).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.manifests import Rendered


@dataclass(frozen=True)
class Endpoint:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # named container ports
    ip: str | None = None  # set for addresses outside the cluster
    inside: bool = False  # a pod of the rendered namespace (subject to its policies)


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict[str, Any], other: Endpoint, own_namespace: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        address = ipaddress.ip_address(other.ip)
        block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        if address.version != block.version or address not in block:
            return False
        return not any(address in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", [])
                       if ipaddress.ip_network(e).version == address.version)
    if other.ip is not None:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = selector_matches(peer["namespaceSelector"], other.namespace_labels)
    else:
        namespace_ok = other.namespace_labels == own_namespace
    return namespace_ok and selector_matches(peer.get("podSelector", {}), other.labels)


def _port_matches(rule: dict[str, Any], port: int, protocol: str, target: Endpoint) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        wanted = p.get("port")
        if wanted is None:
            return True
        number = target.ports.get(wanted) if isinstance(wanted, str) else wanted
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


class Policies:
    def __init__(self, rendered: Rendered) -> None:
        self.policies = rendered.of_kind("NetworkPolicy")
        self.namespace_labels = rendered.namespace_labels

    def _selecting(self, pod: Endpoint, direction: str) -> list[dict[str, Any]]:
        return [p for p in self.policies
                if direction in p["spec"].get("policyTypes", ["Ingress"])
                and selector_matches(p["spec"]["podSelector"], pod.labels)]

    def _side_allows(self, pod: Endpoint, other: Endpoint, port: int, protocol: str, direction: str,
                     port_owner: Endpoint) -> bool:
        selecting = self._selecting(pod, direction)
        if not selecting:
            return True
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in selecting:
            for rule in policy["spec"].get(rules_key, []):
                peers = rule.get(peers_key)
                peer_ok = not peers or any(_peer_matches(peer, other, self.namespace_labels) for peer in peers)
                if peer_ok and _port_matches(rule, port, protocol, port_owner):
                    return True
        return False

    def allows(self, source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
        if source.inside and not self._side_allows(source, target, port, protocol, "Egress", target):
            return False
        return not (target.inside and not self._side_allows(target, source, port, protocol, "Ingress", target))


def pods(rendered: Rendered) -> dict[str, Endpoint]:
    """Every rendered pod template as an endpoint, by workload name."""
    out = {}
    for w in rendered.workloads:
        template = w["spec"]["template"]
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
                 for p in c.get("ports", []) if "name" in p}
        out[w["metadata"]["name"]] = Endpoint(
            w["metadata"]["name"], template["metadata"].get("labels", {}), rendered.namespace_labels, ports,
            inside=True)
    return out


def outside_pod(name: str, namespace: str, labels: dict[str, str]) -> Endpoint:
    return Endpoint(name, labels, {"kubernetes.io/metadata.name": namespace})


KUBE_DNS = outside_pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"})
KEDA_OPERATOR = outside_pod("keda-operator", "keda", {"app.kubernetes.io/name": "keda-operator"})
PROMETHEUS = outside_pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
OTHER_APP = outside_pod("some-client", "apps", {"app": "client"})
PUBLIC_SITE = Endpoint("public-site", ip="93.184.216.34")
PUBLIC_SITE_V6 = Endpoint("public-site-v6", ip="2606:4700::1111")
CLOUD_METADATA = Endpoint("cloud-metadata", ip="169.254.169.254")
PRIVATE_HOSTS = [Endpoint("vpc-host", ip="10.0.12.7"), Endpoint("lan-host", ip="192.168.1.10"),
                 Endpoint("docker-host", ip="172.17.0.1"), Endpoint("loopback", ip="127.0.0.1")]
