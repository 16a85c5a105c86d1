"""No drift between the manifests and the settings modules (toolfabric_server/<layer>/settings.py, one per service).

Every TOOLFABRIC_* variable a manifest sets must be a field of a settings class owning that
prefix (the longest matching one: TOOLFABRIC_GATEWAY_PORT belongs to GatewaySettings, not to
CommonSettings), and every container's environment must parse with every settings class, as the
processes themselves would parse it at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from tests.k8s.manifests import Rendered
from tests.settings_modules import clear_settings_cache, settings_classes
from toolfabric_server.common import settings
from toolfabric_server.gateway import settings as gateway_settings
from toolfabric_server.index import settings as index_settings


def prefixes() -> dict[str, list[type[BaseSettings]]]:
    """env prefix -> the settings classes reading it (the index library shares the search service's prefix)."""
    classes: dict[str, list[type[BaseSettings]]] = {}
    for cls in settings_classes():
        classes.setdefault(cls.model_config.get("env_prefix", "").upper(), []).append(cls)
    return classes


def owner(variable: str) -> tuple[type[BaseSettings], str] | None:
    """(settings class, field name) a TOOLFABRIC_* variable sets, or None when none has it."""
    classes = prefixes()
    prefix = max((p for p in classes if p and variable.startswith(p)), key=len, default=None)
    if prefix is None:
        return None
    field = variable[len(prefix):].split("__", 1)[0].lower()  # FOO__BAR sets a nested field of foo
    return next(((cls, field) for cls in classes[prefix] if field in cls.model_fields), None)


def toolfabric_variables(rendered: Rendered) -> dict[str, str]:
    """Every TOOLFABRIC_* variable a manifest sets -> where."""
    found = {}
    for cm in rendered.of_kind("ConfigMap"):
        for key in cm.get("data", {}):
            if key.startswith("TOOLFABRIC_"):
                found[key] = f"ConfigMap {cm['metadata']['name']}"
    for c in rendered.containers():
        for var in c.spec.get("env", []):
            if var["name"].startswith("TOOLFABRIC_"):
                found[var["name"]] = c.where
    return found


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Exactly `env` as the process environment, with the settings caches cleared around it."""
    clear_settings_cache()
    try:
        with mock.patch.dict(os.environ, env, clear=True):
            yield
    finally:
        clear_settings_cache()


def test_every_settings_class_has_its_own_prefix() -> None:
    classes = prefixes()
    assert "TOOLFABRIC_" in classes and len(classes) >= 8
    # Only the index library shares a prefix (its variables kept their TOOLFABRIC_SEARCH_ names), field-disjoint.
    shared = {p: c for p, c in classes.items() if len(c) > 1}
    assert list(shared) == ["TOOLFABRIC_SEARCH_"]
    fields = [set(cls.model_fields) for cls in shared["TOOLFABRIC_SEARCH_"]]
    assert not set.intersection(*fields)


def test_every_toolfabric_variable_in_the_manifests_is_a_settings_field(rendered: Rendered) -> None:
    drift = [f"{where}: {name} is not a field of any settings class"
             for name, where in sorted(toolfabric_variables(rendered).items()) if owner(name) is None]
    assert drift == [], "\n".join(drift)


def test_drift_detection_uses_the_longest_prefix() -> None:
    assert owner("TOOLFABRIC_GATEWAY_PORT") == (gateway_settings.GatewaySettings, "port")
    assert owner("TOOLFABRIC_REDIS_URL") == (settings.CommonSettings, "redis_url")
    assert owner("TOOLFABRIC_SEARCH_CRAWL_MAX_PAGES") == (index_settings.IndexSettings, "crawl_max_pages")
    assert owner("TOOLFABRIC_GATEWAY_NO_SUCH_SETTING") is None
    assert owner("TOOLFABRIC_NO_SUCH_SETTING") is None


def test_every_container_environment_parses_with_every_settings_class(rendered: Rendered) -> None:
    problems = []
    for c in rendered.containers():
        env = rendered.env(c)
        if not any(k.startswith("TOOLFABRIC_") for k in env):
            continue
        with environment(env):
            for cls in settings_classes():
                try:
                    cls()
                except ValidationError as exc:
                    problems.append(f"{c.where}: {cls.__name__}: {exc}")
    assert problems == [], "\n".join(problems)


def test_worker_time_limits_fit_the_broker_visibility_timeout(rendered: Rendered) -> None:
    """The Celery app refuses to start otherwise (common/celery_app.py)."""
    from toolfabric_server.common.celery_app import make_celery

    for c in rendered.containers(init=False):
        if c.spec.get("args", [])[:2] == ["toolfabric", "worker"]:
            with environment(rendered.env(c)):
                make_celery(settings.common(), settings.worker())
                worker = settings.worker()
            # Celery's warm shutdown lets a running task finish before the pod is killed.
            assert c.pod["terminationGracePeriodSeconds"] > worker.task_time_limit_s, c.where


def test_tracing_variables_are_ones_the_telemetry_module_accepts(rendered: Rendered) -> None:
    from toolfabric_server.common.telemetry import setup as telemetry

    for c in rendered.containers(init=False):
        env = rendered.env(c)
        if "OTEL_TRACES_EXPORTER" not in env:
            continue
        with environment(env):
            names = telemetry.exporter_names()
        if "otlp" in names:
            assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").startswith("http://"), c.where
            assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc") in ("grpc", "http/protobuf")
            port = int(env["OTEL_EXPORTER_OTLP_ENDPOINT"].rsplit(":", 1)[1].rstrip("/"))
            assert port == (4317 if env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc") == "grpc" else 4318)


@pytest.mark.parametrize(("variable", "field"), [
    ("TOOLFABRIC_GATEWAY_PORT", "grpc"),
    ("TOOLFABRIC_GATEWAY_METRICS_PORT", "metrics"),
    ("TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT", "blob-http"),
    ("TOOLFABRIC_HTTP_PORT", "http"),
])
def test_gateway_ports_in_the_settings_are_the_container_ports(rendered: Rendered, variable: str, field: str) -> None:
    c = rendered.container("gateway")
    ports = {p["name"]: p["containerPort"] for p in c.spec["ports"]}
    assert int(rendered.env(c)[variable]) == ports[field]


def test_processes_listen_on_all_interfaces_so_probes_and_services_reach_them(rendered: Rendered) -> None:
    for c in rendered.containers(init=False):
        env = rendered.env(c)
        if c.spec.get("args", [])[:2] == ["toolfabric", "gateway"]:
            assert env["TOOLFABRIC_GATEWAY_HOST"] in ("0.0.0.0", "::", "[::]"), c.where
            assert env["TOOLFABRIC_HTTP_HOST"] in ("0.0.0.0", "::", "[::]"), c.where
        if c.spec.get("args", [])[:2] == ["toolfabric", "worker"]:
            assert env["TOOLFABRIC_TELEMETRY_METRICS_HOST"] in ("0.0.0.0", "::"), c.where
            ports = {p["name"]: p["containerPort"] for p in c.spec["ports"]}
            assert int(env["TOOLFABRIC_TELEMETRY_METRICS_PORT"]) == ports["metrics"], c.where


def test_data_dir_is_a_writable_volume(rendered: Rendered) -> None:
    for c in rendered.containers(init=False):
        data_dir = rendered.env(c).get("TOOLFABRIC_DATA_DIR")
        if data_dir:
            assert data_dir in {m["mountPath"] for m in c.spec.get("volumeMounts", [])}, c.where
