"""What the engine needs of the world, as small interfaces the doors' wiring fills in (and tests fake).

- the model: `ModelBackend` (model/backend.py, with the model package; Triton or a completions server);
- the tools: `ToolExecutor` (Celery sits behind it: gateway/celery_executor.py);
- the image store: `BlobReader`, the bytes of an image by reference (common/blobs.py);
- text channels: `ChannelSplitter`, labelling streamed model text as thinking/answer (gateway/channels.py);
- events: `Emit`, where each stamped event goes (the door's wiring records and delivers it: gateway/delivery.py
  for Run, the trajectory recorder for Step);
- limits: `ToolLimits`, the settings a tool round runs with (the gateway's settings satisfy it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.model.backend import ModelBackend

__all__ = ["BlobReader", "ChannelSplitter", "Emit", "ModelBackend", "ServingModel", "ToolDispatchError", "ToolExecutor",
           "ToolInvocation", "ToolLimits"]

Emit = Callable[[pb.RunEvent], Awaitable[None]]


class ToolDispatchError(Exception):
    """A tool call could not be delivered, or its result did not come back in time. `may_have_run`: it reached
    a worker's queue and may have run (a timeout), so it counts against the tenant's calls per minute."""

    def __init__(self, kind: str, message: str, may_have_run: bool = False) -> None:
        super().__init__(message)
        self.kind, self.may_have_run = kind, may_have_run


@dataclass
class ToolInvocation:
    service: str
    tool: str
    arguments: dict[str, Any]
    context: ToolContext
    timeout_s: float
    headers: dict[str, str] = field(default_factory=dict)


class ToolExecutor(Protocol):
    async def call(self, invocation: ToolInvocation) -> ToolResult:
        """Run one tool call; raise ToolDispatchError if it could not run or its result never came."""
        ...


class ChannelSplitter(Protocol):
    def feed(self, chunk: str) -> list[tuple[pb.Channel, str]]:
        """(channel, text) segments of the next chunk of one model step's text, in order."""
        ...


class BlobReader(Protocol):
    async def get(self, ref: str) -> bytes:
        """The bytes stored under `ref` (raises toolfabric_server.common.errors.BlobNotFound when they expired)."""
        ...


class ServingModel(ModelBackend, Protocol):
    """The model port as a door admits runs with it: whether a model is served, and by which server."""

    async def serves(self, model: str) -> bool: ...

    def server_of(self, model: str) -> str: ...


class ToolLimits(Protocol):
    @property
    def max_parallel_calls_per_step(self) -> int: ...

    @property
    def tool_timeout_s(self) -> float: ...
