"""In-process implementations of the agent loop's two interfaces, for testing the loop in milliseconds.

`ScriptedModel` is a `ModelBackend` that streams prepared steps; `RecordingTools` is a
`ToolExecutor` that answers each tool with a handler. Both record what the loop asked of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from toolfabric_server.common.tools import ToolResult
from toolfabric_server.engine.ports import ToolInvocation
from toolfabric_server.model.backend import ModelChunk, ModelUnavailable


@dataclass
class Step:
    """One scripted model step: its text in `chunks`; `fail` raises ModelUnavailable after them;
    `hang` blocks after them until cancelled."""

    chunks: list[str]
    fail: str | None = None
    hang: bool = False


@dataclass
class ModelRequest:
    model: str
    prompt: str
    images: list[bytes]
    sampling: dict[str, Any]


class ScriptedModel:
    """A ModelBackend that streams one scripted step per call (an answer once the script runs out)."""

    def __init__(self, steps: list[Step | str]) -> None:
        self._steps = [Step([s]) if isinstance(s, str) else s for s in steps]
        self.requests: list[ModelRequest] = []
        self.streaming = asyncio.Event()  # set once a step has streamed its chunks
        self.cancelled = False

    async def stream(self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any],
                     request_id: str) -> AsyncIterator[ModelChunk]:
        self.requests.append(ModelRequest(model, prompt, images, sampling))
        index = len(self.requests) - 1
        step = self._steps[index] if index < len(self._steps) else Step(["<answer>script exhausted</answer>"])
        for chunk in step.chunks:
            await asyncio.sleep(0)
            yield ModelChunk(text=chunk)
        self.streaming.set()
        if step.fail:
            raise ModelUnavailable(step.fail)
        if step.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        yield ModelChunk(finish_reason="stop", input_tokens=len(prompt.split()), output_tokens=len(step.chunks))


Handler = Callable[[ToolInvocation], Awaitable[ToolResult]]


async def echo(invocation: ToolInvocation) -> ToolResult:
    return ToolResult(text=f"{invocation.tool} ok")


@dataclass
class RecordingTools:
    """A ToolExecutor: `handlers[tool]` answers (default: a one-line success); records every invocation,
    how many ran at once, and which were cancelled."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    invocations: list[ToolInvocation] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, invocation: ToolInvocation) -> ToolResult:
        self.invocations.append(invocation)
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.set()
        try:
            return await self.handlers.get(invocation.tool, echo)(invocation)
        except asyncio.CancelledError:
            self.cancelled.append(invocation.context.call_id)
            raise
        finally:
            self.running -= 1


async def forever(invocation: ToolInvocation) -> ToolResult:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")
