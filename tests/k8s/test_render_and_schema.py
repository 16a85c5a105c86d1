"""Both overlays (and every component) render, and every object is valid for the Kubernetes API."""

from __future__ import annotations

import copy
import shutil
from collections import Counter
from pathlib import Path

from tests.k8s import schema
from tests.k8s.manifests import SECRET_NAME, SECRETS_DIR, Rendered, render, secret_contract


def test_every_rendered_object_matches_its_api_schema(rendered: Rendered) -> None:
    errors = [e for obj in rendered.objects for e in schema.validate(obj)]
    assert errors == [], "\n".join(errors)


def test_everything_lives_in_one_namespace_with_restricted_pod_security(rendered: Rendered) -> None:
    namespace = rendered.get("Namespace", rendered.namespace)
    assert namespace is not None, "the overlay must create its namespace"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_object_is_labelled_part_of_toolfabric(rendered: Rendered) -> None:
    missing = [f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects
               if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "toolfabric"]
    assert missing == []
    unlabelled_pods = [w["metadata"]["name"] for w in rendered.workloads
                       if w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/part-of") != "toolfabric"]
    assert unlabelled_pods == [], "NetworkPolicies select fabric pods by this label"


def test_object_names_are_unique_per_kind(rendered: Rendered) -> None:
    counts = Counter((o["kind"], o["metadata"]["name"]) for o in rendered.objects)
    assert [key for key, n in counts.items() if n > 1] == []


def test_secrets_kustomization_makes_the_secret_the_workloads_reference(tmp_path: Path, dev: Rendered) -> None:
    work = tmp_path / "secrets"
    shutil.copytree(SECRETS_DIR, work, ignore=shutil.ignore_patterns("secrets.env"))
    shutil.copy(work / "secrets.env.example", work / "secrets.env")
    objects = render(work)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("Secret", SECRET_NAME)]
    secret = objects[0]
    assert secret["metadata"]["namespace"] == dev.namespace
    assert set(secret.get("data", {})) == set(secret_contract())
    assert schema.validate(secret) == []


def test_secret_values_are_never_committed() -> None:
    assert not (SECRETS_DIR / "secrets.env").exists() or "secrets.env" in (SECRETS_DIR / ".gitignore").read_text()
    values = {k: v for k, v in secret_contract().items() if v.strip()}
    assert values == {}, "secrets.env.example lists keys only"


# -- the validator itself: it must reject what the API server would reject -----------------------

def test_validator_rejects_unknown_misspelt_and_mistyped_fields(gpu: Rendered) -> None:
    deployment = copy.deepcopy(gpu.one("Deployment", "gateway"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    errors = schema.validate(deployment)
    assert any("readinesProbe: unknown field" in e for e in errors)

    deployment = copy.deepcopy(gpu.one("Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "50051"
    assert any("containerPort" in e for e in schema.validate(deployment))

    deployment = copy.deepcopy(gpu.one("Deployment", "gateway"))
    del deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    assert any("name" in e for e in schema.validate(deployment))


def test_validator_rejects_a_kind_its_api_version_does_not_serve(gpu: Rendered) -> None:
    hpa = copy.deepcopy(gpu.one("HorizontalPodAutoscaler", "gateway"))
    hpa["apiVersion"] = "apps/v1"
    assert schema.validate(hpa) == [
        "HorizontalPodAutoscaler/gateway: apps/v1 does not serve kind HorizontalPodAutoscaler"]


def test_validator_checks_keda_objects_against_the_shipped_schema(gpu: Rendered) -> None:
    scaled = copy.deepcopy(gpu.one("ScaledObject", "worker-vision"))
    trigger = scaled["spec"]["triggers"][0]
    trigger["metdata"] = trigger.pop("metadata")
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["policies"][0]["value"] = "1"
    errors = schema.validate(scaled)
    assert any("required field metadata is missing" in e for e in errors)
    assert any("metdata: unknown field" in e for e in errors)
    assert any("V2HPAScalingPolicy" in e for e in errors), "HPA behavior is checked by the Kubernetes model"

    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert schema.validate(unknown) != []
