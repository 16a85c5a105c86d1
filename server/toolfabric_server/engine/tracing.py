"""The engine's GenAI telemetry (OpenTelemetry semantic conventions): the spans' names and attributes, and how a
failure marks a span, kept out of the control flow that opens them."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode
from opentelemetry.trace import Status as SpanStatus

from toolfabric_server.engine.trajectory import Scope

tracer = trace.get_tracer("toolfabric.engine")
Attributes = dict[str, str | int | float]


def agent_attributes(scope: Scope, conversation_id: str = "", **extra: str | int | float) -> Attributes:
    """The trajectory's root span, `invoke_agent toolfabric` (Run adds its budgets, Step its driver)."""
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "toolfabric",
            "gen_ai.conversation.id": conversation_id or scope.trajectory_id,
            "toolfabric.trajectory.id": scope.trajectory_id, "gen_ai.request.model": scope.model,
            "toolfabric.tenant": scope.tenant, "toolfabric.mode": scope.mode, **extra}


def step_attributes(step: int, **extra: str | int | float) -> Attributes:
    return {"toolfabric.step": step, **extra}


def chat_attributes(model: str, sampling: dict[str, Any]) -> Attributes:
    """A model step's span, `chat <model>`."""
    attributes: Attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                              "gen_ai.provider.name": "triton"}
    for key in ("temperature", "top_p", "top_k", "max_tokens", "seed"):
        if key in sampling:
            attributes[f"gen_ai.request.{key}"] = sampling[key]
    return attributes


def chat_finished(span: Span, model: str, input_tokens: int, output_tokens: int, first_chunk_s: float | None,
                  finish: str | None) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if first_chunk_s is not None:
        span.set_attribute("gen_ai.response.time_to_first_chunk", first_chunk_s)
    if finish:
        span.set_attribute("gen_ai.response.finish_reasons", [finish])
    span.set_attribute("gen_ai.response.model", model)


def tool_attributes(tool: str, service: str, call_id: str, arguments: dict[str, Any],
                    capture_content: bool) -> Attributes:
    """A tool call's span, `execute_tool <tool>`; arguments only when content capture is on (they may hold user
    data)."""
    attributes: Attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                              "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function",
                              "toolfabric.service": service}
    if capture_content:
        attributes["gen_ai.tool.call.arguments"] = json.dumps(arguments, ensure_ascii=False)
    return attributes


def failed(span: Span, reason: str, error_type: str, exc: BaseException | None = None) -> None:
    if exc is not None:
        span.record_exception(exc)
    span.set_status(SpanStatus(StatusCode.ERROR, reason))
    span.set_attribute("error.type", error_type)


def trace_id(span: Span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
