"""What the agent loop needs of the tools, as a small interface (Celery sits behind it).

The model side is `services.model.backend.ModelBackend`, which lives with the model package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.exceptions import ToolDispatchError
from services.common.tools import ToolContext, ToolResult

__all__ = ["ToolDispatchError", "ToolExecutor", "ToolInvocation"]


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
