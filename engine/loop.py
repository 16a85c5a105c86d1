"""The agent loop: model step → tool calls → observations → next step, until an answer or a budget.

It knows nothing of Triton or Celery: the model and the tools sit behind `ModelBackend` and
`ToolExecutor`. Nothing the model writes can crash it — unparseable output, unknown tools and bad
arguments become error observations the model reads on its next step; a failed tool call is an
observation too. Events go out through `emit` as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode
from pydantic import ValidationError

from engine import plans
from engine.images import ImageRegistry, RegisteredImage
from engine.ports import ChannelSplitter, Emit, ToolDispatchError, ToolExecutor, ToolInvocation
from engine.prompting import history_messages, observation_parts, system_message, user_message
from engine.resume import Checkpoint
from engine.spec import RunSpec
from engine.tokens import StepTokens, TokenLedger
from services.common.blobs import AsyncBlobStore
from services.common.settings import GatewaySettings
from services.common.settings import telemetry as telemetry_settings
from services.common.telemetry import metrics
from services.common.tools import Catalog, ToolContext, ToolResult, ToolSpec, describe_validation_error
from services.model.backend import ModelBackend, ModelUnavailable
from services.model.chat_template import ImagePart, Message
from services.model.coalesce import coalesced
from services.model.dialects import Dialect, ParsedStep, RawCall
from services.model.tokenizer import ModelTokenizer
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names

tracer = trace.get_tracer("toolfabric.gateway")
log = logging.getLogger(__name__)



class _Sink:
    """Stamps events with trajectory id, step, sequence number and time before emitting them."""

    def __init__(self, trajectory_id: str, emit: Emit, seq: int = 0) -> None:
        self.trajectory_id, self.step, self._seq, self._emit = trajectory_id, 0, seq, emit

    @property
    def seq(self) -> int:
        return self._seq

    async def __call__(self, **event: Any) -> None:
        self._seq += 1
        now = Timestamp()
        now.GetCurrentTime()
        await self._emit(pb.RunEvent(trajectory_id=self.trajectory_id, step=self.step, seq=self._seq, time=now,
                                     **event))


@dataclass
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    token_unit: str = ""  # as the model's engine reports it ("words" for the baseline)
    image_tokens: int = 0
    steps: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=lambda: {"model": 0.0, "tools": 0.0})
    counters: dict[str, float] = field(default_factory=dict)

    def proto(self, total_s: float) -> pb.Usage:
        return pb.Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens, steps=self.steps,
                        tool_calls=self.tool_calls, phase_seconds={**self.phases, "total": total_s},
                        counters=self.counters, token_unit=self.token_unit or "tokens",
                        image_tokens=self.image_tokens)


class AgentLoop:
    def __init__(self, model: ModelBackend, tools: ToolExecutor, blobs: AsyncBlobStore, catalog: Catalog,
                 dialect_for: Callable[[str], Dialect], settings: GatewaySettings,
                 tokenizer_for: Callable[[str], ModelTokenizer | None] = lambda _: None, *,
                 channels: Callable[[], ChannelSplitter]) -> None:
        self._model, self._tools, self._blobs = model, tools, blobs
        self._channels = channels  # a new splitter per model step (gateway/channels.py's ChannelTracker)
        self._catalog, self._dialect_for, self._settings = catalog, dialect_for, settings
        self._tokenizer_for = tokenizer_for  # a model's own tokenizer, for token-in (None: text prompts)

    async def run(self, spec: RunSpec, emit: Emit, resume: Checkpoint | None = None,
                  resumed_by: str = "") -> tuple[pb.Status, str]:
        """Runs the trajectory to its end; returns (Status, reason). Cancelling the task ends it as CANCELLED.

        With `resume` (see engine/resume.py), it goes on from the checkpoint's first incomplete step."""
        sink = _Sink(spec.trajectory_id, emit)
        admitted = spec.admitted_at or time.time()
        state = _Run(spec, self._dialect_for(spec.model), ImageRegistry(self._blobs), _Usage(), time.monotonic())
        state.tokens = TokenLedger(self._tokenizer_for(spec.model), state.dialect.template.turn_end)
        for carried in spec.carried:
            state.registry.carry(carried)
        state.inputs = [state.registry.add_input(image.ref, image.width, image.height, image.mime_type,
                                                 image.data or None)
                        for image in spec.inputs]
        if resume is not None:
            self._restore(state, resume)
            sink._seq = resume.last_seq  # the sequence goes on where the record stopped
        attributes: dict[str, str | int | float] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "toolfabric",
            "gen_ai.conversation.id": spec.conversation_id or spec.trajectory_id,
            "toolfabric.trajectory.id": spec.trajectory_id,
            "gen_ai.request.model": spec.model, "toolfabric.tenant": spec.tenant,
            "toolfabric.mode": spec.mode, "toolfabric.budget.max_steps": spec.max_steps,
            "toolfabric.budget.max_tool_calls": spec.max_tool_calls, "toolfabric.budget.deadline_s": spec.deadline_s,
        }
        metrics.trajectory_started(spec.mode)
        with tracer.start_as_current_span("invoke_agent toolfabric", attributes=attributes) as span:
            ctx = span.get_span_context()
            trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
            if resume is not None:
                await sink(resumed=pb.TrajectoryResumed(
                    from_step=resume.next_step, from_seq=resume.last_seq, gateway=resumed_by,
                    reason=f"gateway lost; resumed with {len(resume.steps)} completed steps kept"))
            else:
                await sink(started=pb.TrajectoryStarted(
                    trace_id=trace_id, mode=_mode_enum(spec.mode), model=spec.model,
                    budgets=pb.Budgets(max_steps=spec.max_steps, max_tool_calls=spec.max_tool_calls,
                                       deadline_s=spec.deadline_s),
                    images=[i.as_ref() for i in state.registry.images],
                    admitted_at=_timestamp(admitted), deadline=_timestamp(admitted + spec.deadline_s),
                    admission_wait_s=spec.admission_wait_s, tools=list(spec.tools)))
            failure: BaseException | None = None
            try:
                # From admission (what the client was told in `started`); a resumed run: from its record's start.
                spent = resume.elapsed_s if resume else time.time() - admitted
                async with asyncio.timeout(spec.deadline_s - spent):
                    status, reason = await self._steps(state, sink, resume.next_step if resume else 1)
            except TimeoutError:
                status, reason = pb.STATUS_BUDGET_EXHAUSTED, f"deadline of {spec.deadline_s:g}s reached"
            except asyncio.CancelledError:
                # Cancel asked for this trajectory to stop: finish the record, don't propagate.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                status, reason = pb.STATUS_CANCELLED, "cancelled"
            except ModelUnavailable as exc:
                failure, error_type = exc, "model_unavailable"
                status, reason = pb.STATUS_FAILED, str(exc)
            except Exception as exc:  # a fault of the fabric itself fails this trajectory, not the gateway
                log.exception("trajectory %s failed", spec.trajectory_id)
                failure, error_type = exc, "internal"
                status, reason = pb.STATUS_FAILED, f"internal error: {type(exc).__name__}: {exc}"
            if failure is not None:
                span.record_exception(failure)
                span.set_status(SpanStatus(StatusCode.ERROR, reason))
                span.set_attribute("error.type", error_type)
                await sink(error=pb.Error(code=error_type, message=reason, fatal=True,
                                          kind=names.error_kind(error_type)))
            span.set_attribute("toolfabric.status", pb.Status.Name(status))
            metrics.trajectory_finished(spec.mode, names.status_name(status))
            await sink(usage=state.usage.proto(time.monotonic() - state.started))
            await sink(finished=pb.TrajectoryFinished(status=status, reason=reason,
                                                      resumes=resume.resumes + 1 if resume else 0))
        return status, reason

    def _opening(self, state: _Run) -> list[Message]:
        """How every run starts: the system prompt, the conversation's earlier turns, this turn's question."""
        spec = state.spec
        shown = {name for turn in spec.history for name in turn.images}
        return [system_message(spec.mode, self._visible(spec), state.dialect), *history_messages(spec.history),
                user_message(spec.question, [i for i in state.inputs if i.name not in shown],
                             [i for i in spec.carried if i.step > 0])]

    def _restore(self, state: _Run, point: Checkpoint) -> None:
        """The conversation, images and budget of the checkpoint's completed steps, as they were recorded."""
        state.messages = self._opening(state)
        for done in point.steps:
            if done.tokens is not None:
                state.tokens.restore(state.dialect.template.render(state.messages), done.text,
                                     _image_count(state.messages), done.tokens)
            state.messages.append(Message("assistant", [done.text]))
            parts: list[str | ImagePart] = []
            for obs in done.observations:
                images = [state.registry.add_output(i.blob, i.width, i.height, i.origin, i.mime_type, i.step)
                          for i in obs.images]
                parts += observation_parts(obs.name, obs.call_id or "-", obs.text,
                                           (obs.error_kind or "error") if obs.is_error else None, images,
                                           state.dialect.observation_tags)
            state.messages.append(Message("user", parts))
        state.usage.tool_calls = point.tool_calls()
        state.tool_calls = sum(state.usage.tool_calls.values())
        state.usage.steps = len(point.steps)

    async def _steps(self, state: _Run, sink: _Sink, first_step: int = 1) -> tuple[pb.Status, str]:
        spec = state.spec
        if not state.messages:
            state.messages = self._opening(state)
        for step in range(first_step, spec.max_steps + 1):
            sink.step = step
            state.usage.steps = step
            metrics.step(spec.mode)
            with tracer.start_as_current_span(f"step {step}", attributes={"toolfabric.step": step}):
                text = await self._model_step(state, sink)
                state.messages.append(Message("assistant", [text]))
                parsed = state.dialect.parse(text)
                if not parsed.calls and parsed.plan is not None and spec.mode == "plan":
                    if not spec.execute_plan or state.plan is not None:
                        plan_json = json.dumps(parsed.plan, ensure_ascii=False)
                        await sink(answer=pb.FinalAnswer(text=plan_json, plan_json=plan_json))
                        return pb.STATUS_COMPLETED, "the model returned a plan"
                    state.plan = parsed.plan  # its steps run next, each a loop step of its own
                else:
                    if not parsed.calls and parsed.answer is not None:
                        await sink(answer=pb.FinalAnswer(text=parsed.answer, plan_json=state.plan_json))
                        return pb.STATUS_COMPLETED, "the model answered"
                    if state.tools_exhausted and parsed.calls:
                        return pb.STATUS_BUDGET_EXHAUSTED, f"max_tool_calls={spec.max_tool_calls} used up"
                    state.messages.append(Message("user", await self._act(state, sink, parsed)))
            if state.plan is not None and not state.plan_started:
                state.plan_started = True
                return await self._execute_plan(state, sink, step + 1)
        return pb.STATUS_BUDGET_EXHAUSTED, f"max_steps={spec.max_steps} reached without an answer"

    async def _act(self, state: _Run, sink: _Sink, parsed: ParsedStep) -> list[str | ImagePart]:
        """A parsed step's problems (one error observation) and calls, as the observation parts the model reads."""
        parts: list[str | ImagePart] = []
        if parsed.problems:
            message = "; ".join(parsed.problems)
            await sink(observation=pb.Observation(call_id="", name="model_output", text=message,
                                                  is_error=True, error_kind="model_output",
                                                  kind=pb.ERROR_KIND_MODEL_OUTPUT))
            parts += observation_parts("model_output", "-", message, "model_output", [],
                                       state.dialect.observation_tags)
        if parsed.calls:
            parts += await self._run_calls(state, sink, parsed.calls)
        return parts

    async def _execute_plan(self, state: _Run, sink: _Sink, first_step: int) -> tuple[pb.Status, str]:
        """The plan's steps in order (engine/plans.py), one loop step each; at its verification step the ordinary
        loop takes over, asked for the answer."""
        spec, plan = state.spec, state.plan or []
        for number, item in enumerate(plan, start=1):
            step = first_step + number - 1
            if item["tool_name"] == "none":
                plans.tell(state.messages, plans.answer_instruction(number, len(plan), item))
                return await self._steps(state, sink, step)
            if step > spec.max_steps:
                return pb.STATUS_BUDGET_EXHAUSTED, (f"max_steps={spec.max_steps} reached running plan step {number} "
                                                    f"of {len(plan)}")
            if state.tools_exhausted:
                return pb.STATUS_BUDGET_EXHAUSTED, f"max_tool_calls={spec.max_tool_calls} used up"
            sink.step = step
            state.usage.steps = step
            metrics.step(spec.mode)
            attributes = {"toolfabric.step": step, "toolfabric.plan.step": number,
                          "toolfabric.plan.tool": item["tool_name"]}
            with tracer.start_as_current_span(f"step {step}", attributes=attributes):
                if plans.placeholders(item):  # only the model knows what "[Person from Step 1]" turned out to be
                    plans.tell(state.messages, plans.fill_instruction(number, len(plan), item))
                    text = await self._model_step(state, sink)
                    state.messages.append(Message("assistant", [text]))
                    parsed = state.dialect.parse(text)
                    parsed.answer = parsed.plan = None  # this step is for the call; the answer comes at the end
                    if not parsed.calls and not parsed.problems:
                        parsed.problems.append(f"plan step {number} needs a {item['tool_name']} call")
                    plans.add(state.messages, await self._act(state, sink, parsed))
                else:
                    plans.add(state.messages, await self._run_calls(state, sink, [plans.call_of(item)]))
        return await self._steps(state, sink, first_step + len(plan))  # no verification step: the loop goes on

    async def _model_step(self, state: _Run, sink: _Sink) -> str:
        spec = state.spec
        prompt = state.dialect.template.render(state.messages)
        # The dialect's stop strings end the step where the fabric's observation would begin.
        sampling = {**spec.sampling, "stop": list(state.dialect.stop)} if state.dialect.stop else spec.sampling
        by_name = {i.name: i for i in state.registry.images}
        names = [p.name for m in state.messages for p in m.parts if isinstance(p, ImagePart)]
        images = [await state.registry.data(by_name[n]) for n in names]
        sizes = [(by_name[n].width, by_name[n].height) for n in names]
        input_ids = state.tokens.prompt_for(prompt, sizes)
        # Only to a backend that is given ids: one written before token-in takes the call without them.
        extra: dict[str, Any] = {"input_ids": input_ids} if input_ids is not None else {}
        got = StepTokens()
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": spec.model,
                      "gen_ai.provider.name": "triton"}
        for key in ("temperature", "top_p", "top_k", "max_tokens", "seed"):
            if key in spec.sampling:
                attributes[f"gen_ai.request.{key}"] = spec.sampling[key]
        tracker, pieces = self._channels(), []
        started = time.monotonic()
        with tracer.start_as_current_span(f"chat {spec.model}", kind=trace.SpanKind.CLIENT,
                                          attributes=attributes) as span:
            first_token: float | None = None
            finish: str | None = None
            span_input = span_output = 0
            request_id = f"{spec.trajectory_id}:{sink.step}"
            # Read ahead: chunks that pile up while one is being handled come as one (services/model/coalesce.py);
            # closed on the way out however the step ends, so a cancel closes the engine stream at once.
            chunks = coalesced(self._model.stream(spec.model, prompt, images, sampling, request_id, **extra))
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    got.add(chunk)
                    state.usage.token_unit = chunk.token_unit
                    if chunk.text:
                        if first_token is None:
                            first_token = time.monotonic() - started
                        pieces.append(chunk.text)
                        for channel, text in tracker.feed(chunk.text):
                            await sink(text=pb.TextDelta(channel=channel, text=text))
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
                    # Triton's vLLM backend sends num_input_tokens (the prompt's) on every response and
                    # num_output_tokens per response (this response's tokens): the first is kept, the second summed.
                    if chunk.input_tokens is not None:
                        span_input = chunk.input_tokens
                    if chunk.output_tokens is not None:
                        span_output += chunk.output_tokens
            state.usage.input_tokens += span_input
            state.usage.output_tokens += span_output
            span.set_attribute("gen_ai.usage.input_tokens", span_input)
            span.set_attribute("gen_ai.usage.output_tokens", span_output)
            if first_token is not None:
                span.set_attribute("gen_ai.response.time_to_first_chunk", first_token)
            if finish:
                span.set_attribute("gen_ai.response.finish_reasons", [finish])
            span.set_attribute("gen_ai.response.model", spec.model)
            metrics.model_step(spec.model, first_token, int(span_input or 0), int(span_output or 0),
                               time.monotonic() - started - first_token if first_token is not None else None)
        state.usage.phases["model"] += time.monotonic() - started
        text = "".join(pieces)
        tokens = state.tokens.record(prompt, text, sizes, input_ids, got)
        if tokens is not None:
            state.usage.image_tokens += sum(tokens.image_tokens)
            await sink(tokens=tokens)
        return text

    def run_state(self, spec: RunSpec, registry: ImageRegistry, tool_calls: int) -> _Run:
        """The state `run_calls` needs, for a trajectory whose model steps come from outside (gateway/stepping)."""
        return _Run(spec, self._dialect_for(spec.model), registry, _Usage(), time.monotonic(), tool_calls=tool_calls)

    async def run_calls(self, state: _Run, sink: _Sink, calls: list[RawCall]) -> list[str | ImagePart]:
        """One step's tool calls as Run executes them: the step API (gateway/stepping) drives its trajectories here."""
        return await self._run_calls(state, sink, calls)

    async def _run_calls(self, state: _Run, sink: _Sink, calls: list[RawCall]) -> list[str | ImagePart]:
        planned: list[tuple[str, RawCall, ToolSpec | None, dict[str, Any] | None, ToolResult | None]] = []
        for index, raw in enumerate(calls, start=1):
            call_id = f"s{sink.step}c{index}"
            await sink(tool_call=pb.ToolCall(call_id=call_id, name=raw.name,
                                             arguments_json=json.dumps(raw.arguments, ensure_ascii=False)))
            tool, arguments, refusal = self._check_call(state, raw)
            if refusal is None:
                state.tool_calls += 1
                state.usage.tool_calls[tool.name] = state.usage.tool_calls.get(tool.name, 0) + 1  # type: ignore[union-attr]
            planned.append((call_id, raw, tool, arguments, refusal))

        limit = asyncio.Semaphore(self._settings.max_parallel_calls_per_step)
        started = time.monotonic()

        async def run_one(call_id: str, tool: ToolSpec, arguments: dict[str, Any]) -> tuple[ToolResult, float]:
            async with limit:
                t0 = time.monotonic()
                return await self._execute(state, tool, call_id, arguments), time.monotonic() - t0

        async def done(value: ToolResult) -> tuple[ToolResult, float]:
            value.attempts = 0  # refused before sending: it never ran (and counts against no limit)
            return value, 0.0

        results = await asyncio.gather(*[
            run_one(call_id, tool, arguments) if refusal is None and tool and arguments is not None
            else done(refusal or ToolResult.failure("internal", "call was not run"))
            for call_id, _, tool, arguments, refusal in planned
        ])
        state.usage.phases["tools"] += time.monotonic() - started

        parts: list[str | ImagePart] = []
        for (call_id, raw, tool, _, _), (result, duration) in zip(planned, results, strict=True):
            new_images = [state.registry.add_output(i.ref, i.width, i.height, i.origin or f"{raw.name} output",
                                                    i.mime_type, sink.step) for i in result.images]
            for key, value in result.usage.items():
                state.usage.counters[key] = state.usage.counters.get(key, 0.0) + value
            await sink(observation=pb.Observation(
                call_id=call_id, name=tool.name if tool else raw.name, text=result.text,
                images=[i.as_ref() for i in new_images], is_error=not result.ok,
                error_kind=result.error_kind or "", kind=names.error_kind(result.error_kind or ""),
                duration_s=duration, attempts=result.attempts))
            metrics.tool_call(tool.name if tool else "unknown", "ok" if result.ok else result.error_kind or "error",
                              duration or None)  # a refused call never ran: no latency
            parts += observation_parts(tool.name if tool else raw.name, call_id, result.text,
                                       None if result.ok else (result.error_kind or "error"), new_images,
                                       state.dialect.observation_tags)
        return parts

    def _visible(self, spec: RunSpec) -> list[ToolSpec]:
        return [t for t in self._catalog.visible(spec.mode) if t.service not in spec.excluded_services
                and (not spec.tools or t.name in spec.tools)]

    def _check_call(self, state: _Run, raw: RawCall) -> tuple[ToolSpec | None, dict[str, Any] | None,
                                                               ToolResult | None]:
        """The tool and its validated arguments, or the error result the model gets instead."""
        spec = state.spec
        tool = self._catalog.get(raw.name)
        visible = [t.name for t in self._visible(spec)]
        if tool is None or tool.hidden:
            return None, None, ToolResult.failure("unknown_tool",
                                                  f"unknown tool {raw.name!r}; available tools: {', '.join(visible)}")
        if spec.mode not in tool.modes:
            return tool, None, ToolResult.failure(
                "unknown_tool",
                f"tool {tool.name!r} is not available in {spec.mode} mode; available: {', '.join(visible)}")
        if spec.tools and tool.name not in spec.tools:
            return tool, None, ToolResult.failure(
                "unknown_tool", f"tool {tool.name!r} is not offered in this run; available: {', '.join(visible)}")
        if tool.service in spec.excluded_services:
            return tool, None, ToolResult.failure(
                "unknown_tool", f"tool {tool.name!r} is turned off for this request (search disabled); "
                                f"available: {', '.join(visible)}")
        try:
            arguments = tool.arguments.model_validate(raw.arguments).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            return tool, None, ToolResult.failure("invalid_argument", describe_validation_error(raw.name, exc))
        if state.tool_calls >= spec.max_tool_calls:
            state.tools_exhausted = True
            return tool, None, ToolResult.failure(
                "budget_exhausted",
                f"the tool-call budget of {spec.max_tool_calls} calls is used up; answer with what you have")
        return tool, arguments, None

    async def _execute(self, state: _Run, tool: ToolSpec, call_id: str, arguments: dict[str, Any]) -> ToolResult:
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool.name,
                      "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function",
                      "toolfabric.service": tool.service}
        if telemetry_settings().capture_content:  # opt-in: arguments may hold user data
            attributes["gen_ai.tool.call.arguments"] = json.dumps(arguments, ensure_ascii=False)
        with tracer.start_as_current_span(f"execute_tool {tool.name}", attributes=attributes) as span:
            context = ToolContext(trajectory_id=state.spec.trajectory_id, call_id=call_id, tenant=state.spec.tenant,
                                  question=state.spec.question, images=state.registry.refs(),
                                  eval_run=state.spec.eval_run)
            try:
                result = await self._tools.call(ToolInvocation(tool.service, tool.name, arguments, context,
                                                               self._settings.tool_timeout_s))
            except ToolDispatchError as exc:
                span.record_exception(exc)
                result = ToolResult.failure(exc.kind, str(exc))
                result.attempts = 1 if exc.may_have_run else 0
            if telemetry_settings().capture_content:
                span.set_attribute("gen_ai.tool.call.result", result.text)
            if not result.ok:
                span.set_status(SpanStatus(StatusCode.ERROR, result.text[:200]))
                span.set_attribute("error.type", result.error_kind or "tool_error")
            return result


@dataclass
class _Run:
    spec: RunSpec
    dialect: Dialect
    registry: ImageRegistry
    usage: _Usage
    started: float
    messages: list[Message] = field(default_factory=list)
    inputs: list[RegisteredImage] = field(default_factory=list)  # this turn's own input images
    tool_calls: int = 0
    tools_exhausted: bool = False
    plan: list[dict[str, Any]] | None = None  # the plan being executed (RunSpec.execute_plan)
    plan_started: bool = False
    tokens: TokenLedger = field(default_factory=lambda: TokenLedger(None))

    @property
    def plan_json(self) -> str:
        return json.dumps(self.plan, ensure_ascii=False) if self.plan is not None else ""


def _image_count(messages: list[Message]) -> int:
    return sum(1 for m in messages for p in m.parts if isinstance(p, ImagePart))


# For the step API (gateway/stepping), which records its trajectories' events through the same sink.
EventSink = _Sink


def _mode_enum(mode: str) -> pb.Mode:
    return names.MODES[mode]


def _timestamp(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(round(seconds * 1e9))
    return out
