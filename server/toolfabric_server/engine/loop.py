"""The Run driver: the model chooses every action; step after step (engine/step.py) until an answer or a budget.

It knows nothing of Triton or Celery: the model and the tools sit behind the ports (engine/ports.py). Nothing
the model writes can crash it — unparseable output, unknown tools and bad arguments become error observations
the model reads on its next step; a failed tool call is an observation too. Events go out through `emit` as
they happen. Plan mode with `execute_plan` runs the planner's plan (engine/plans.py); a resumed run goes on
from its checkpoint (engine/resume.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.common.tools import Catalog
from toolfabric_server.engine import plans, resume, tracing
from toolfabric_server.engine.events import EventSink, timestamp
from toolfabric_server.engine.images import ImageRegistry
from toolfabric_server.engine.model_call import ModelCall
from toolfabric_server.engine.ports import BlobReader, ChannelSplitter, Emit, ModelBackend, ToolExecutor, ToolLimits
from toolfabric_server.engine.prompting import history_messages, system_message, user_message
from toolfabric_server.engine.resume import Checkpoint
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.engine.step import Step
from toolfabric_server.engine.tokens import TokenLedger
from toolfabric_server.engine.tools import ToolRound
from toolfabric_server.engine.trajectory import Scope, Trajectory
from toolfabric_server.model.chat_template import Message
from toolfabric_server.model.dialects import Dialect
from toolfabric_server.model.errors import ModelUnavailable
from toolfabric_server.model.tokenizer import ModelTokenizer

log = logging.getLogger(__name__)


class AgentLoop:
    """The engine as the doors' wiring builds it: `run` drives a Run; `step` and `trajectory` serve the Step
    service, which drives trajectories whose actions come from outside through the same step."""

    def __init__(self, model: ModelBackend, tools: ToolExecutor, blobs: BlobReader, catalog: Catalog,
                 dialect_for: Callable[[str], Dialect], limits: ToolLimits,
                 tokenizer_for: Callable[[str], ModelTokenizer | None] = lambda _: None, *,
                 channels: Callable[[Dialect], ChannelSplitter], capture_content: bool = False,
                 text_window_s: float = 0.0) -> None:
        self._blobs, self._dialect_for = blobs, dialect_for
        self._tokenizer_for = tokenizer_for  # a model's own tokenizer, for token-in (None: text prompts)
        # text_window_s: how long streamed text waits for more before it is an event (model/coalesce.py)
        self.step = Step(ModelCall(model, channels, text_window_s),
                         ToolRound(catalog, tools, limits, capture_content), channels)

    def trajectory(self, scope: Scope, registry: ImageRegistry | None = None, tool_calls: int = 0) -> Trajectory:
        """A trajectory's state for the step: its dialect, its images (a new registry unless given), its calls so
        far."""
        return Trajectory(scope, self._dialect_for(scope.model), registry or ImageRegistry(self._blobs),
                          tool_calls=tool_calls)

    async def run(self, spec: RunSpec, emit: Emit, checkpoint: Checkpoint | None = None,
                  resumed_by: str = "") -> tuple[pb.Status, str]:
        """Runs the trajectory to its end; returns (Status, reason). Cancelling the task ends it as CANCELLED.

        With `checkpoint` (see engine/resume.py), it goes on from the checkpoint's first incomplete step."""
        sink = EventSink(spec.trajectory_id, emit, checkpoint.last_seq if checkpoint else 0)
        admitted = spec.admitted_at or time.time()
        state = self.trajectory(spec.scope())
        state.tokens = TokenLedger(self._tokenizer_for(spec.model), state.dialect.template.turn_end)
        for carried in spec.carried:
            state.registry.carry(carried)
        state.inputs = [state.registry.add_input(image.ref, image.width, image.height, image.mime_type,
                                                 image.data or None)
                        for image in spec.inputs]
        if checkpoint is not None:
            resume.restore(state, checkpoint, self._opening(spec, state))
        attributes = tracing.agent_attributes(
            state.scope, spec.conversation_id, **{"toolfabric.budget.max_steps": spec.max_steps,
                                                  "toolfabric.budget.max_tool_calls": spec.max_tool_calls,
                                                  "toolfabric.budget.deadline_s": spec.deadline_s})
        metrics.trajectory_started(spec.mode)
        with tracing.tracer.start_as_current_span("invoke_agent toolfabric", attributes=attributes) as span:
            if checkpoint is not None:
                await sink(resumed=pb.TrajectoryResumed(
                    from_step=checkpoint.next_step, from_seq=checkpoint.last_seq, gateway=resumed_by,
                    reason=f"gateway lost; resumed with {len(checkpoint.steps)} completed steps kept"))
            else:
                await sink(started=pb.TrajectoryStarted(
                    trace_id=tracing.trace_id(span), mode=names.MODES[spec.mode], model=spec.model,
                    budgets=pb.Budgets(max_steps=spec.max_steps, max_tool_calls=spec.max_tool_calls,
                                       deadline_s=spec.deadline_s),
                    images=[i.as_ref() for i in state.registry.images],
                    admitted_at=timestamp(admitted), deadline=timestamp(admitted + spec.deadline_s),
                    admission_wait_s=spec.admission_wait_s, tools=list(spec.tools)))
            failure: BaseException | None = None
            try:
                # From admission (what the client was told in `started`); a resumed run: from its record's start.
                spent = checkpoint.elapsed_s if checkpoint else time.time() - admitted
                async with asyncio.timeout(spec.deadline_s - spent):
                    status, reason = await self._steps(spec, state, sink, checkpoint.next_step if checkpoint else 1)
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
                tracing.failed(span, reason, error_type, failure)
                await sink(error=pb.Error(code=error_type, message=reason, fatal=True,
                                          kind=names.error_kind(error_type)))
            span.set_attribute("toolfabric.status", pb.Status.Name(status))
            metrics.trajectory_finished(spec.mode, names.status_name(status))
            await sink(usage=state.usage.proto(time.monotonic() - state.started))
            await sink(finished=pb.TrajectoryFinished(status=status, reason=reason,
                                                      resumes=checkpoint.resumes + 1 if checkpoint else 0))
        return status, reason

    def _opening(self, spec: RunSpec, state: Trajectory) -> list[Message]:
        """How every run starts: the system prompt, the conversation's earlier turns, this turn's question."""
        shown = {name for turn in spec.history for name in turn.images}
        return [system_message(spec.mode, self.step.tools.visible(state.scope), state.dialect),
                *history_messages(spec.history, state.dialect),
                user_message(spec.question, [i for i in state.inputs if i.name not in shown],
                             [i for i in spec.carried if i.step > 0])]

    def _begin_step(self, spec: RunSpec, state: Trajectory, sink: EventSink, step: int) -> None:
        sink.step = step
        state.usage.steps = step
        metrics.step(spec.mode)

    async def _steps(self, spec: RunSpec, state: Trajectory, sink: EventSink,
                     first_step: int = 1) -> tuple[pb.Status, str]:
        if not state.messages:
            state.messages = self._opening(spec, state)
        for step in range(first_step, spec.max_steps + 1):
            self._begin_step(spec, state, sink, step)
            with tracing.tracer.start_as_current_span(f"step {step}", attributes=tracing.step_attributes(step)):
                parsed = await self.step.from_model(state, sink, spec.sampling)
                if not parsed.calls and parsed.plan is not None:  # plan mode (elsewhere a plan is a problem)
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
                    state.messages.append(Message("user", await self.step.observe(state, sink, parsed)))
            if state.plan is not None and not state.plan_started:
                state.plan_started = True
                return await self._execute_plan(spec, state, sink, step + 1)
        return pb.STATUS_BUDGET_EXHAUSTED, f"max_steps={spec.max_steps} reached without an answer"

    async def _execute_plan(self, spec: RunSpec, state: Trajectory, sink: EventSink,
                            first_step: int) -> tuple[pb.Status, str]:
        """The plan's steps in order (engine/plans.py), one loop step each; at its verification step the ordinary
        loop takes over, asked for the answer."""
        plan = state.plan or []
        for number, item in enumerate(plan, start=1):
            step = first_step + number - 1
            if item["tool_name"] == "none":
                plans.tell(state.messages, plans.answer_instruction(number, len(plan), item, state.dialect))
                return await self._steps(spec, state, sink, step)
            if step > spec.max_steps:
                return pb.STATUS_BUDGET_EXHAUSTED, (f"max_steps={spec.max_steps} reached running plan step {number} "
                                                    f"of {len(plan)}")
            if state.tools_exhausted:
                return pb.STATUS_BUDGET_EXHAUSTED, f"max_tool_calls={spec.max_tool_calls} used up"
            self._begin_step(spec, state, sink, step)
            attributes = tracing.step_attributes(step, **{"toolfabric.plan.step": number,
                                                          "toolfabric.plan.tool": item["tool_name"]})
            with tracing.tracer.start_as_current_span(f"step {step}", attributes=attributes):
                if plans.placeholders(item):  # only the model knows what "[Person from Step 1]" turned out to be
                    plans.tell(state.messages, plans.fill_instruction(number, len(plan), item, state.dialect))
                    parsed = await self.step.from_model(state, sink, spec.sampling)
                    parsed.answer = parsed.plan = None  # this step is for the call; the answer comes at the end
                    if not parsed.calls and not parsed.problems:
                        parsed.problems.append(f"plan step {number} needs a {item['tool_name']} call")
                    plans.add(state.messages, await self.step.observe(state, sink, parsed))
                else:
                    plans.add(state.messages, await self.step.tools.run(state, sink, [plans.call_of(item)]))
        return await self._steps(spec, state, sink, first_step + len(plan))  # no verification step: the loop goes on
