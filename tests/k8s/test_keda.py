"""KEDA scales each worker on the Celery queue that worker really consumes."""

from __future__ import annotations

from tests.k8s.manifests import Rendered
from tests.support.plugin_dist import declared_plugins
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.settings import CommonSettings, WorkerSettings
from toolfabric_server.common.tools import SERVICES, task_name

# Plugin services the repository ships (the ocr example): their workers consume queues named after them.
WORKER_QUEUES = (*SERVICES, *declared_plugins())

# Metadata the KEDA redis (list) scaler understands.
REDIS_SCALER_KEYS = {
    "address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv",
    "passwordFromEnv", "listName", "listLength", "activationListLength", "databaseIndex", "enableTLS", "unsafeSsl",
}


def celery_queues() -> set[str]:
    """Queue names of the Celery app every process builds (kombu's Redis list keys)."""
    app = make_celery(CommonSettings(), WorkerSettings())
    queues = {q.name for q in app.conf.task_queues}
    routed = {route["queue"] for route in app.conf.task_routes.values()}
    assert routed <= queues
    return queues


def test_celery_routes_each_service_task_to_its_own_queue() -> None:
    assert celery_queues() == set(SERVICES)
    app = make_celery(CommonSettings(), WorkerSettings())
    assert {name: route["queue"] for name, route in app.conf.task_routes.items()} == {
        task_name(s): s for s in SERVICES}


def test_every_keda_trigger_names_a_celery_queue_and_scales_its_consumer(rendered: Rendered) -> None:
    queues = celery_queues() | set(WORKER_QUEUES)
    for scaled in rendered.of_kind("ScaledObject"):
        target = rendered.one("Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        consumed = target["spec"]["template"]["spec"]["containers"][0]["args"]
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "redis", "Celery's Redis broker keeps each queue in a list"
            meta = trigger["metadata"]
            assert set(meta) <= REDIS_SCALER_KEYS, set(meta) - REDIS_SCALER_KEYS
            assert meta["listName"] in queues
            assert consumed == ["toolfabric", "worker", meta["listName"]], "scales the queue's own consumer"
            assert int(meta["listLength"]) >= 1 and int(meta.get("activationListLength", "0")) >= 0
            assert int(meta.get("databaseIndex", "0")) == 0


def test_keda_authenticates_with_the_redis_password(rendered: Rendered) -> None:
    for scaled in rendered.of_kind("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            auth = rendered.one("TriggerAuthentication", trigger["authenticationRef"]["name"])
            refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
            assert refs["password"] == ("toolfabric-secrets", "redis-password")


def test_every_worker_is_scaled_exactly_once_when_keda_is_on(rendered: Rendered) -> None:
    scaled = [s["spec"]["scaleTargetRef"]["name"] for s in rendered.of_kind("ScaledObject")]
    if scaled:
        assert sorted(scaled) == sorted(f"worker-{q}" for q in WORKER_QUEUES)
        for s in rendered.of_kind("ScaledObject"):
            assert 1 <= s["spec"]["minReplicaCount"] <= s["spec"]["maxReplicaCount"]
            # Scale-down must not cut running tasks short: KEDA's cooldown and the pod's grace period.
            target = rendered.one("Deployment", s["spec"]["scaleTargetRef"]["name"])
            assert target["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300
