"""Dialects by name, and which one a model speaks (from `ModelSettings`)."""

from __future__ import annotations

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.model.dialects.base import Dialect
from toolfabric_server.model.dialects.deepeyes import DeepEyesDialect
from toolfabric_server.model.dialects.qwen3vl import Qwen3VLDialect

DIALECTS: dict[str, Dialect] = {d.name: d for d in (Qwen3VLDialect(), DeepEyesDialect())}
# Reads text whose model is not known (an evals answer, a chat history, a stream with no dialect given);
# the settings' default_dialect names the same one (tests/unit/test_dialects.py holds them together).
DEFAULT_DIALECT: Dialect = DIALECTS["qwen3vl"]


def dialect_named(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ConfigurationError(f"unknown dialect {name!r}; known: {', '.join(sorted(DIALECTS))}") from None


def dialect_for(model: str, per_model: dict[str, str], default: str) -> Dialect:
    """The dialect `model` speaks: its entry in `per_model` (TOOLFABRIC_MODEL_DIALECTS), else `default`."""
    return dialect_named(per_model.get(model, default))


def check(per_model: dict[str, str], default: str) -> None:
    """Fail at start-up, naming the setting, if any configured dialect does not exist."""
    for name in {default, *per_model.values()}:
        dialect_named(name)
