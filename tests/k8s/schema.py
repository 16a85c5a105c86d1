"""Validating rendered objects offline.

Built-in kinds: against the models of the official `kubernetes` Python client (generated from the
Kubernetes OpenAPI spec). `Model.from_dict` checks types and required fields; the client drops
unknown fields silently, so `unknown_fields` walks the object against each model's
`attribute_map` and reports them (a misspelt or misplaced field would otherwise be ignored by
kubectl too and never take effect). The API group/version must serve the kind (its generated
`<Group><Version>Api` class has a create method for it).

Custom resources (KEDA): against the small JSON schemas in tests/k8s/schemas/<group>/<version>/<Kind>.json,
checked by `validate_json_schema`, a subset of JSON Schema (type, properties, required,
additionalProperties, items, enum, minimum, maximum, minItems) plus `x-kubernetes-model`, which
hands a sub-object to the Kubernetes model validator (e.g. the HPA behavior inside a ScaledObject).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import models

SCHEMAS = Path(__file__).resolve().parent / "schemas"

_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")
_PRIMITIVES = {"str", "int", "bool", "float", "object", "datetime", "date", "bytearray", "bytes"}


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def model_class(api_version: str, kind: str) -> type | None:
    """The client model of a built-in kind, or None when the client has no such kind/version."""
    _, version = _split_api_version(api_version)
    return getattr(models, f"{version[:1].upper()}{version[1:]}{kind}", None)


def _snake(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def served_by_api(api_version: str, kind: str) -> bool:
    """Whether group/version serves kind, per the client's generated API classes."""
    group, version = _split_api_version(api_version)
    group_name = "Core" if not group else "".join(p.capitalize() for p in group.split(".")[0].split("-"))
    api = getattr(client, f"{group_name}{version.capitalize()}Api", None)
    if api is None:
        return False
    snake = _snake(kind)
    return hasattr(api, f"create_namespaced_{snake}") or hasattr(api, f"create_{snake}")


def unknown_fields(data: Any, type_name: str, path: str) -> list[str]:
    """Paths of keys the model for `type_name` does not have (recursively)."""
    match = _LIST.match(type_name)
    if match:
        if not isinstance(data, list):
            return []  # from_dict reports the type error
        return [e for i, item in enumerate(data) for e in unknown_fields(item, match.group(1), f"{path}[{i}]")]
    match = _DICT.match(type_name)
    if match:
        if not isinstance(data, dict):
            return []
        return [e for k, v in data.items() for e in unknown_fields(v, match.group(1), f"{path}.{k}")]
    if type_name in _PRIMITIVES or not isinstance(data, dict):
        return []
    cls = getattr(models, type_name, None)
    if cls is None:
        return []
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    errors = []
    for key, value in data.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field for {type_name}")
            continue
        errors.extend(unknown_fields(value, cls.openapi_types[by_json[key]], f"{path}.{key}"))
    return errors


def validate_model(data: Any, type_name: str, path: str) -> list[str]:
    """Errors of `data` as an instance of client model `type_name` (types, required, unknown fields)."""
    cls = getattr(models, type_name)
    errors = unknown_fields(data, type_name, path)
    try:
        cls.from_dict(data)
    except Exception as exc:  # pydantic ValidationError, or TypeError on a wrong container type
        errors.append(f"{path}: {exc}")
    return errors


def validate_builtin(obj: dict[str, Any]) -> list[str]:
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if not served_by_api(api_version, kind):
        return [f"{where}: {api_version} does not serve kind {kind}"]
    cls = model_class(api_version, kind)
    if cls is None:
        return [f"{where}: the kubernetes client has no model for {api_version} {kind}"]
    return validate_model(obj, cls.__name__, where)


def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    path = SCHEMAS / api_version / f"{kind}.json"
    return json.loads(path.read_text()) if path.exists() else None


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float),
}


def validate_json_schema(instance: Any, schema: dict[str, Any], path: str) -> list[str]:
    if "x-kubernetes-model" in schema:
        return validate_model(instance, schema["x-kubernetes-model"], path)
    expected = schema.get("type")
    if expected:
        ok = isinstance(instance, _TYPES[expected]) and not (
            expected in ("integer", "number") and isinstance(instance, bool)
        )
        if not ok:
            return [f"{path}: expected {expected}, got {type(instance).__name__} {instance!r}"]
    errors: list[str] = []
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(instance, int | float) and instance < schema["minimum"]:
        errors.append(f"{path}: {instance} is below the minimum {schema['minimum']}")
    if "maximum" in schema and isinstance(instance, int | float) and instance > schema["maximum"]:
        errors.append(f"{path}: {instance} is above the maximum {schema['maximum']}")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{path}: required field {key} is missing")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in properties:
                errors.extend(validate_json_schema(value, properties[key], f"{path}.{key}"))
            elif extra is False:
                errors.append(f"{path}.{key}: unknown field")
            elif isinstance(extra, dict):
                errors.extend(validate_json_schema(value, extra, f"{path}.{key}"))
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{path}: needs at least {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors.extend(validate_json_schema(item, schema["items"], f"{path}[{i}]"))
    return errors


def validate_custom(obj: dict[str, Any]) -> list[str]:
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    schema = crd_schema(obj.get("apiVersion", ""), obj.get("kind", ""))
    if schema is None:
        return [f"{where}: no schema for {obj.get('apiVersion')} {obj.get('kind')} in {SCHEMAS}"]
    errors = validate_model(obj.get("metadata"), "V1ObjectMeta", f"{where}.metadata")
    body = {k: v for k, v in obj.items() if k != "metadata"}
    return errors + validate_json_schema(body, schema, where)


def validate(obj: dict[str, Any]) -> list[str]:
    """Every schema error of one rendered object."""
    if crd_schema(obj.get("apiVersion", ""), obj.get("kind", "")) is not None:
        return validate_custom(obj)
    return validate_builtin(obj)
