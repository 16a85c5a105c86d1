"""Argument models for MCP tools: the server's JSON schema is the contract, checked with jsonschema.

The gateway validates every call against its tool's `arguments` model before dispatch; for an MCP
tool that model holds the server's `inputSchema` and validates against it, and advertises exactly it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jsonschema
from pydantic import RootModel, model_validator


class SchemaArguments(RootModel[dict[str, Any]]):
    schema_: ClassVar[dict[str, Any]] = {"type": "object"}

    @model_validator(mode="after")
    def _matches_schema(self) -> SchemaArguments:
        errors = sorted(jsonschema.Draft202012Validator(self.schema_).iter_errors(self.root), key=str)
        if errors:
            where = ".".join(str(p) for p in errors[0].absolute_path) or "arguments"
            raise ValueError(f"{where}: {errors[0].message}")
        return self

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(cls.schema_)


def arguments_model(tool: str, schema: Any) -> type[SchemaArguments]:
    """A model for `schema`, or ValueError when the schema is not a valid JSON schema of an object."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise ValueError("its input schema is not a JSON schema of an object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"its input schema is invalid: {exc.message}") from None
    return type(f"{tool}_arguments", (SchemaArguments,), {"schema_": schema})
