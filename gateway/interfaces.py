"""The two things the agent loop depends on, as small interfaces (Triton and Celery sit behind them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.exceptions import ModelUnavailable, ToolDispatchError
from services.common.tools import ToolContext, ToolResult

__all__ = ["ModelBackend", "ModelChunk", "ModelUnavailable", "ToolDispatchError", "ToolExecutor", "ToolInvocation"]


@dataclass
class ModelChunk:
    """One streamed piece of a model step: new text, and on the last piece the finish data."""

    text: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class ModelBackend(Protocol):
    def stream(
        self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str
    ) -> AsyncIterator[ModelChunk]: ...


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
