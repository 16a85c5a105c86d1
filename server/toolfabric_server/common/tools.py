"""The tool contract between the gateway and the tool workers.

A tool is described by a `ToolSpec` (name, owning service, argument model, description).
The gateway validates arguments against the spec before dispatch, then sends one Celery
task `toolfabric.<service>.call(tool, arguments, context)` to the service's queue; the
worker answers with a `ToolResult` as JSON. Images never travel in messages: the context
maps every image name the trajectory has (`<image>`, `<image 2>`, `<sub-image 3>`) to a blob
reference, and new images come back as references.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolfabric.v1 import names
from toolfabric_server.common.errors import UnknownImage

# A service is one Celery queue and one worker kind. The built-in ones ship with the fabric; a plugin
# package adds more (ToolPlugin below, discovered by toolfabric_server.tools.plugins). Names are open but validated.
Service = str
SERVICES: tuple[Service, ...] = ("vision", "search", "fetch")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# The agent modes as the code spells them: the proto's Mode names (toolfabric.v1.names.MODES).
AgentMode = names.ModeName
ALL_MODES: frozenset[str] = frozenset(names.MODES)


def check_service_name(name: str) -> str:
    """`name` if it can be a queue, a worker and a task name; ValueError saying the rule otherwise."""
    if not isinstance(name, str) or not _SERVICE_NAME.match(name):
        raise ValueError(f"service name {name!r} is not valid: use 1-31 lowercase letters, digits or '_', "
                         "starting with a letter")
    return name


def task_name(service: str) -> str:
    """Celery task name of a service's single entry point."""
    return f"toolfabric.{service}.call"


@dataclass(frozen=True)
class ToolSpec:
    """What the gateway knows of a tool without importing its implementation."""

    name: str
    service: Service
    description: str
    arguments: type[BaseModel]
    aliases: tuple[str, ...] = ()
    modes: frozenset[str] = ALL_MODES
    # Hidden tools (diagnostics such as `ping`) are callable but never advertised to the model.
    hidden: bool = False

    def __post_init__(self) -> None:
        check_service_name(self.service)

    def json_schema(self) -> dict[str, Any]:
        return copy.deepcopy(_json_schema(self.arguments))

    def function_schema(self) -> dict[str, Any]:
        """The OpenAI/Qwen function-calling shape the system prompt lists."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.json_schema()},
        }


@functools.cache
def _json_schema(arguments: type[BaseModel]) -> dict[str, Any]:
    # Building a schema takes pydantic milliseconds per tool; every trajectory's system prompt lists them all,
    # on the gateway's event loop.
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    return schema


class ToolContext(BaseModel):
    """What a worker gets besides the arguments."""

    model_config = ConfigDict(extra="ignore")

    trajectory_id: str = ""
    call_id: str = ""
    tenant: str = ""  # whose trajectory ("" = auth off): a signed image URL a tool hands out is bound to it
    question: str = ""
    # Every image name the trajectory has seen → blob reference ("sha256:<hex>").
    images: dict[str, str] = Field(default_factory=dict)
    # W3C trace context carried to the worker (traceparent/tracestate).
    trace: dict[str, str] = Field(default_factory=dict)
    # The eval run asking (RunRequest.eval_run): its answers are trailed for `eval run --freeze`.
    eval_run: str = ""

    @property
    def trail(self) -> str:
        """The trail the cache records this call's answers under: the trajectory's, for eval runs only."""
        return self.trajectory_id if self.eval_run else ""


class NewImage(BaseModel):
    """An image a tool produced; the gateway names it `<sub-image N>`."""

    ref: str
    width: int
    height: int
    origin: str = ""
    mime_type: str = "image/png"


class ToolResult(BaseModel):
    """A worker's answer. `text` is what the model reads in its observation."""

    ok: bool = True
    text: str = ""
    data: Any = None
    images: list[NewImage] = Field(default_factory=list)
    error_kind: str | None = None
    # Counters for the usage report: provider_calls, cache_hit_hot, cost_units, …
    usage: dict[str, float] = Field(default_factory=dict)
    # Set by the gateway: how many times the call was sent (above 1 when its worker died and it ran again).
    attempts: int = 1

    @classmethod
    def failure(cls, kind: str, message: str) -> ToolResult:
        return cls(ok=False, text=message, error_kind=kind)


_NAME = re.compile(r"^<?\s*(sub-image|image)\s*(\d+)?\s*>?$", re.IGNORECASE)


def canonical_image_name(name: str) -> str:
    """`<image>`, `image 1`, `<Image 1>` → `<image 1>`; `sub-image 2` → `<sub-image 2>`.

    Raises UnknownImage for strings that are not image placeholders at all.
    """
    match = _NAME.match(name.strip())
    if not match:
        raise UnknownImage(f"{name!r} is not an image name; use <image N> or <sub-image N>")
    kind, number = match.group(1).lower(), match.group(2)
    if kind == "image":
        return f"<image {int(number) if number else 1}>"
    if number is None:
        raise UnknownImage(f"{name!r} needs a number, e.g. <sub-image 1>")
    return f"<sub-image {int(number)}>"


def resolve_image(name: str, images: dict[str, str]) -> str:
    """Blob reference of an image name in a trajectory, or UnknownImage saying which exist."""
    canonical = canonical_image_name(name)
    ref = images.get(canonical)
    if ref is None:
        known = ", ".join(sorted(images)) or "none"
        raise UnknownImage(f"unknown image {name!r}; this trajectory has: {known}")
    return ref


@dataclass(frozen=True)
class ToolPlugin:
    """What a plugin package's `toolfabric.tools` entry point names: a service of its own.

    `tools` are imported by the gateway (keep that module light: pydantic only); `handlers` is the
    "module:attribute" of a `dict[tool name, handler]` that only the service's worker imports, or of a function
    of the worker's `CommonSettings` returning one (called once at the worker's start: read settings there).
    """

    service: str
    tools: tuple[ToolSpec, ...]
    handlers: str

    def __post_init__(self) -> None:
        check_service_name(self.service)
        if self.service in SERVICES:
            raise ValueError(f"service name {self.service!r} belongs to a built-in service")
        if ":" not in self.handlers:
            raise ValueError(f"handlers {self.handlers!r} must be 'module:attribute'")
        for spec in self.tools:
            if spec.service != self.service:
                raise ValueError(f"tool {spec.name!r} names service {spec.service!r}, not {self.service!r}")


@dataclass
class Catalog:
    """All tools by name and alias."""

    specs: list[ToolSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name: dict[str, ToolSpec] = {}
        for spec in self.specs:
            for name in (spec.name, *spec.aliases):
                if name in self._by_name:
                    raise ValueError(f"tool name {name!r} registered twice")
                self._by_name[name] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self._by_name.get(name)

    def visible(self, mode: str) -> list[ToolSpec]:
        return [s for s in self.specs if not s.hidden and mode in s.modes]

    def services(self) -> list[str]:
        """Every service with a tool in the catalog: the built-ins first, then plugins by name."""
        extra = sorted({s.service for s in self.specs} - set(SERVICES))
        return [*SERVICES, *extra]


class PingArgs(BaseModel):
    """Arguments of the hidden `ping` diagnostic each service answers (used by benchmarks)."""

    model_config = ConfigDict(extra="forbid")
    payload: str = ""


def describe_validation_error(tool: str, exc: ValidationError) -> str:
    """One line per problem, naming the argument: what the model needs to fix its call."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        problems.append(f"{where}: {err['msg']}")
    return f"invalid arguments for {tool}: " + "; ".join(problems)
