"""A step's tool round: each call checked (known tool, visible in the mode, allowed for the request, arguments
valid, budget left), the valid ones run in parallel through the `ToolExecutor` port, each result an observation
event and an observation block the model reads next. A refused call is an error observation too, never run."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from opentelemetry.trace import Span
from pydantic import ValidationError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.common.tools import Catalog, ToolContext, ToolResult, ToolSpec, describe_validation_error
from toolfabric_server.engine import tracing
from toolfabric_server.engine.events import EventSink
from toolfabric_server.engine.ports import ToolDispatchError, ToolExecutor, ToolInvocation, ToolLimits
from toolfabric_server.engine.prompting import observation_parts
from toolfabric_server.engine.trajectory import Scope, Trajectory
from toolfabric_server.model.chat_template import ImagePart
from toolfabric_server.model.dialects import RawCall

_Planned = tuple[str, RawCall, ToolSpec | None, dict[str, Any] | None, ToolResult | None]


class ToolRound:
    def __init__(self, catalog: Catalog, executor: ToolExecutor, limits: ToolLimits,
                 capture_content: bool = False) -> None:
        self._catalog, self._executor, self._limits = catalog, executor, limits
        self._capture = capture_content  # tool arguments and results on spans (opt-in: they may hold user data)

    def visible(self, scope: Scope) -> list[ToolSpec]:
        """The tools a trajectory's model is told of (and may call)."""
        return [t for t in self._catalog.visible(scope.mode) if t.service not in scope.excluded_services
                and (not scope.tools or t.name in scope.tools)]

    async def run(self, trajectory: Trajectory, sink: EventSink, calls: list[RawCall]) -> list[str | ImagePart]:
        """The calls of one step, as the observation parts the model reads next."""
        planned: list[_Planned] = []
        for index, raw in enumerate(calls, start=1):
            call_id = f"s{sink.step}c{index}"
            await sink(tool_call=pb.ToolCall(call_id=call_id, name=raw.name,
                                             arguments_json=json.dumps(raw.arguments, ensure_ascii=False)))
            tool, arguments, refusal = self._check(trajectory, raw)
            if refusal is None and tool is not None:
                trajectory.tool_calls += 1
                trajectory.usage.tool_calls[tool.name] = trajectory.usage.tool_calls.get(tool.name, 0) + 1
            planned.append((call_id, raw, tool, arguments, refusal))

        limit = asyncio.Semaphore(self._limits.max_parallel_calls_per_step)
        started = time.monotonic()

        async def run_one(call_id: str, tool: ToolSpec, arguments: dict[str, Any]) -> tuple[ToolResult, float]:
            async with limit:
                t0 = time.monotonic()
                return await self._execute(trajectory, tool, call_id, arguments), time.monotonic() - t0

        async def done(value: ToolResult) -> tuple[ToolResult, float]:
            value.attempts = 0  # refused before sending: it never ran (and counts against no limit)
            return value, 0.0

        results = await asyncio.gather(*[
            run_one(call_id, tool, arguments) if refusal is None and tool and arguments is not None
            else done(refusal or ToolResult.failure("internal", "call was not run"))
            for call_id, _, tool, arguments, refusal in planned
        ])
        trajectory.usage.phases["tools"] += time.monotonic() - started

        parts: list[str | ImagePart] = []
        for (call_id, raw, tool, _, _), (result, duration) in zip(planned, results, strict=True):
            new_images = [trajectory.registry.add_output(i.ref, i.width, i.height, i.origin or f"{raw.name} output",
                                                         i.mime_type, sink.step) for i in result.images]
            for key, value in result.usage.items():
                trajectory.usage.counters[key] = trajectory.usage.counters.get(key, 0.0) + value
            name = tool.name if tool else raw.name
            await sink(observation=pb.Observation(
                call_id=call_id, name=name, text=result.text,
                images=[i.as_ref() for i in new_images], is_error=not result.ok,
                error_kind=result.error_kind or "", kind=names.error_kind(result.error_kind or ""),
                duration_s=duration, attempts=result.attempts))
            metrics.tool_call(tool.name if tool else "unknown", "ok" if result.ok else result.error_kind or "error",
                              duration or None)  # a refused call never ran: no latency
            parts += observation_parts(name, call_id, result.text,
                                       None if result.ok else (result.error_kind or "error"), new_images,
                                       trajectory.dialect)
        return parts

    def _check(self, trajectory: Trajectory, raw: RawCall) -> tuple[ToolSpec | None, dict[str, Any] | None,
                                                                    ToolResult | None]:
        """The tool and its validated arguments, or the error result the model gets instead."""
        scope = trajectory.scope
        tool = self._catalog.get(raw.name)
        visible = [t.name for t in self.visible(scope)]
        if tool is None or tool.hidden:
            return None, None, ToolResult.failure("unknown_tool",
                                                  f"unknown tool {raw.name!r}; available tools: {', '.join(visible)}")
        if scope.mode not in tool.modes:
            return tool, None, ToolResult.failure(
                "unknown_tool",
                f"tool {tool.name!r} is not available in {scope.mode} mode; available: {', '.join(visible)}")
        if scope.tools and tool.name not in scope.tools:
            return tool, None, ToolResult.failure(
                "unknown_tool", f"tool {tool.name!r} is not offered in this run; available: {', '.join(visible)}")
        if tool.service in scope.excluded_services:
            return tool, None, ToolResult.failure(
                "unknown_tool", f"tool {tool.name!r} is turned off for this request (search disabled); "
                                f"available: {', '.join(visible)}")
        try:
            arguments = tool.arguments.model_validate(raw.arguments).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            return tool, None, ToolResult.failure("invalid_argument", describe_validation_error(raw.name, exc))
        if trajectory.tool_calls >= scope.max_tool_calls:
            trajectory.tools_exhausted = True
            return tool, None, ToolResult.failure(
                "budget_exhausted",
                f"the tool-call budget of {scope.max_tool_calls} calls is used up; answer with what you have")
        return tool, arguments, None

    async def _execute(self, trajectory: Trajectory, tool: ToolSpec, call_id: str,
                       arguments: dict[str, Any]) -> ToolResult:
        scope = trajectory.scope
        attributes = tracing.tool_attributes(tool.name, tool.service, call_id, arguments, self._capture)
        with tracing.tracer.start_as_current_span(f"execute_tool {tool.name}", attributes=attributes) as span:
            context = ToolContext(trajectory_id=scope.trajectory_id, call_id=call_id, tenant=scope.tenant,
                                  question=scope.question, images=trajectory.registry.refs(),
                                  eval_run=scope.eval_run)
            try:
                result = await self._executor.call(ToolInvocation(tool.service, tool.name, arguments, context,
                                                                  self._limits.tool_timeout_s))
            except ToolDispatchError as exc:
                span.record_exception(exc)
                result = ToolResult.failure(exc.kind, str(exc))
                result.attempts = 1 if exc.may_have_run else 0
            _result_on(span, result, self._capture)
            return result


def _result_on(span: Span, result: ToolResult, capture_content: bool) -> None:
    if capture_content:
        span.set_attribute("gen_ai.tool.call.result", result.text)
    if not result.ok:
        tracing.failed(span, result.text[:200], result.error_kind or "tool_error")
