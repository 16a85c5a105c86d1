"""The step API: one step of many trajectories whose model runs elsewhere (an RL trainer's rollout).

For each (trajectory id, action) the service loads the trajectory's state from Redis (the first
action of an unseen id starts it) and takes the engine's step with the trainer's action (engine/step.py, the
step Run takes with the model's: the dialect's parse, validation, the tool round on Celery, tracing, metrics,
image registry), answering with the observation the model reads next. Every event is recorded like a
Run's, so GetTrajectory and replay work for these trajectories too. Each item fails on its own: a
bad action is `valid=False` with the reason as its observation, and the other items go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import redis.asyncio as aredis
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.engine import tracing
from toolfabric_server.engine.events import EventSink
from toolfabric_server.engine.images import ImageRegistry, RegisteredImage
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.trajectory import Scope
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.policy import ANONYMOUS, Policy, Principal, scoped, unscoped
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.stepping.batch import QueuedWrites
from toolfabric_server.gateway.stepping.settings import StepSettings
from toolfabric_server.gateway.stepping.state import Loaded, StateStore, TrajectoryState
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.dialects import ParsedStep, RawCall

log = logging.getLogger(__name__)
_ECHO = 100  # characters of a client's value quoted back in an error message


@dataclass
class StepItem:
    """One trajectory's part of a step request."""

    trajectory_id: str
    action: str = ""
    finish: bool = False
    is_last_step: bool = False
    images: list[pb.ImageInput] = field(default_factory=list)
    model: str = ""
    mode: str = ""
    question: str = ""
    # Calls already in structured form (the MCP server): run as they are, the action is not parsed.
    # An empty list with images only adds the images to the trajectory.
    calls: list[RawCall] | None = None


@dataclass
class StepOutcome:
    trajectory_id: str
    text: str = ""
    images: list[RegisteredImage] = field(default_factory=list)
    done: bool = False
    valid: bool = True
    error: str = ""
    # Each call's own observation event, as recorded (its text without the model's framing, its images).
    observations: list[pb.Observation] = field(default_factory=list)


@dataclass
class _Result:
    outcome: StepOutcome
    state: TrajectoryState | None = None  # to keep (None: unchanged)
    released: str | None = None  # why it ended, when it did


def _invalid(tid: str, error: str, done: bool = False) -> _Result:
    return _Result(StepOutcome(tid, text=f"error: {error}", done=done, valid=False, error=error))


@dataclass
class _Caller:
    """Who sent a step request, and the tool calls its tenant may still make this minute (None: no limit)."""

    principal: Principal
    calls_left: int | None = None


class StepService:
    def __init__(self, loop: AgentLoop, validator: RequestValidator, client: aredis.Redis, blobs: AsyncBlobStore,
                 settings: StepSettings, gateway: GatewaySettings, default_model: str,
                 policy: Policy | None = None) -> None:
        self._loop, self._validator, self._redis, self._blobs = loop, validator, client, blobs
        self._cfg, self._gw, self._default_model, self._policy = settings, gateway, default_model, policy
        self._store = StateStore(client, settings.state_ttl_s, settings.finished_ttl_s)

    async def step(self, items: list[StepItem], principal: Principal = ANONYMOUS) -> list[StepOutcome]:
        """One outcome per item, in order; InvalidRequest when the request as a whole cannot be served,
        LimitExceeded when the caller's tenant is at a limit. Ids are the caller's own: they are stored under
        the tenant's namespace (policy/ownership.py), so two tenants' `rollout-7` never meet."""
        self._check_batch(items)
        if self._policy is None:  # the MCP server on stdio: the local user, no policy to ask
            return await self._step(items, _Caller(principal))
        async with self._policy.step_request(principal) as left:
            return await self._step(items, _Caller(principal, left))

    async def _step(self, items: list[StepItem], caller: _Caller) -> list[StepOutcome]:
        stored = [replace(i, trajectory_id=scoped(caller.principal, i.trajectory_id)) for i in items]
        loaded = await self._store.load([i.trajectory_id for i in stored])
        taken = await self._taken([i.trajectory_id for i, found in zip(stored, loaded, strict=True)
                                   if found.state is None and found.finished is None])
        writes = QueuedWrites(self._redis)
        results = await asyncio.gather(*(self._one(item, found, writes.as_client(), caller, item.trajectory_id in taken)
                                         for item, found in zip(stored, loaded, strict=True)))
        keep = {r.outcome.trajectory_id: r.state for r in results if r.state is not None and r.released is None}
        release = {r.outcome.trajectory_id: r.released for r in results if r.released is not None}
        self._store.save(writes.pipe, keep, release)
        await writes.flush()
        for r in results:
            r.outcome.trajectory_id = unscoped(caller.principal, r.outcome.trajectory_id)
        return [r.outcome for r in results]

    async def _taken(self, new_ids: list[str]) -> set[str]:
        """Of ids about to start a step trajectory, those that already name a recorded trajectory (a Run's):
        a step never writes into a record it did not start."""
        if not new_ids:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for tid in new_ids:
            pipe.exists(recorder.meta_key(tid))
        return {tid for tid, found in zip(new_ids, await pipe.execute(), strict=True) if found}

    def _check_batch(self, items: list[StepItem]) -> None:
        if len(items) > self._cfg.max_batch:
            raise InvalidRequest(f"{len(items)} actions in one request, over the limit of {self._cfg.max_batch} "
                                 "(TOOLFABRIC_STEP_MAX_BATCH)")
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.trajectory_id in first:
                raise InvalidRequest(f"trajectory id {item.trajectory_id[:_ECHO]!r} appears twice (positions "
                                     f"{first[item.trajectory_id]} and {index}); a request takes one action per "
                                     "trajectory")
            first[item.trajectory_id] = index

    async def _one(self, item: StepItem, found: Loaded, records: aredis.Redis, caller: _Caller,
                   taken: bool) -> _Result:
        try:
            if taken:
                return _invalid(item.trajectory_id, f"trajectory id {unscoped(caller.principal, item.trajectory_id)!r} "
                                                    "already names a trajectory that was not started by the step API; "
                                                    "a step trajectory needs an id of its own")
            return await self._item(item, found, records, caller)
        except Exception as exc:  # a fault of the fabric fails this item, never the batch
            log.exception("step of trajectory %s failed", item.trajectory_id)
            return _invalid(item.trajectory_id, f"internal error: {type(exc).__name__}: {exc}")

    async def _item(self, item: StepItem, found: Loaded, records: aredis.Redis, caller: _Caller) -> _Result:
        tid, shown = item.trajectory_id, unscoped(caller.principal, item.trajectory_id)  # stored; as named
        if not shown or len(shown) > self._cfg.max_trajectory_id_chars:
            return _invalid(tid, f"trajectory id must be 1 to {self._cfg.max_trajectory_id_chars} characters")
        state = found.state
        if item.finish:
            if state is not None:
                await self._end(records, tid, state, pb.STATUS_COMPLETED, "finished by the trainer")
                return _Result(StepOutcome(tid, done=True), released="finished by the trainer")
            if found.finished is not None:
                return _Result(StepOutcome(tid, done=True))  # finishing twice is harmless
            return _invalid(tid, f"unknown trajectory id {shown!r}: it never took a step here, or its state expired "
                                 f"({self._cfg.state_ttl_s}s after its last step)", done=True)
        if found.finished is not None:
            return _invalid(tid, f"trajectory {shown!r} has already finished ({found.finished}); a new trajectory "
                                 "needs a new id", done=True)
        if len(item.action) > self._cfg.max_action_chars:
            return _invalid(tid, f"action is {len(item.action)} characters, over the limit of "
                                 f"{self._cfg.max_action_chars} (TOOLFABRIC_STEP_MAX_ACTION_CHARS)")
        try:
            if state is None:
                state = self._new_state(item)
                registry = ImageRegistry(self._blobs)
                await self._add_images(registry, item.images)
                await self._begin(records, tid, state, registry, caller)
            else:
                registry = state.registry(self._blobs)
                await self._add_images(registry, item.images)
        except InvalidRequest as exc:
            return _invalid(tid, str(exc))
        return await self._act(records, item, state, registry, caller)

    def _new_state(self, item: StepItem) -> TrajectoryState:
        mode = item.mode or self._cfg.default_mode
        if mode not in names.MODES:
            raise InvalidRequest(f"mode {mode[:_ECHO]!r} is not one of {sorted(names.MODES)}")
        if len(item.question) > self._gw.max_question_chars:
            raise InvalidRequest(f"question is {len(item.question)} characters, over the limit of "
                                 f"{self._gw.max_question_chars}")
        return TrajectoryState(mode=mode, model=item.model or self._default_model, question=item.question,
                               started=time.time())

    async def _add_images(self, registry: ImageRegistry, images: list[pb.ImageInput]) -> None:
        have = len(registry.images)
        if have + len(images) > self._cfg.max_images:
            raise InvalidRequest(f"{have + len(images)} images, over the limit of {self._cfg.max_images} per "
                                 "trajectory (TOOLFABRIC_STEP_MAX_IMAGES)")
        inputs = sum(1 for i in registry.images if i.step == 0)
        budget = self._validator.decode_budget()  # one action's images share one decode budget
        for offset, image in enumerate(images, start=1):
            checked = await self._validator.input_image(inputs + offset, image, budget)
            registry.add_input(checked.ref, checked.width, checked.height, checked.mime_type, checked.data)

    async def _begin(self, records: aredis.Redis, tid: str, state: TrajectoryState, registry: ImageRegistry,
                     caller: _Caller) -> None:
        """Record the trajectory's start (with its owner) and open its trace, which every later step joins."""
        record = recorder.TrajectoryRecorder(records, tid, self._gw.trajectory_ttl_s)
        await record.begin(state.question, names.MODES[state.mode], state.model, tenant=caller.principal.tenant)
        attributes = tracing.agent_attributes(self._scope(tid, state, caller), **{"toolfabric.driver": "step_api"})
        with tracing.tracer.start_as_current_span("invoke_agent toolfabric", context=trace.set_span_in_context(
                trace.INVALID_SPAN), attributes=attributes) as span:
            ctx = span.get_span_context()
            if ctx.is_valid:
                state.trace_id, state.span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        sink = EventSink(tid, self._observed(record.record, caller))
        await sink(started=pb.TrajectoryStarted(trace_id=state.trace_id, mode=names.MODES[state.mode],
                                                model=state.model,
                                                images=[i.as_ref() for i in registry.images]))
        state.seq = sink.seq
        metrics.trajectory_started(state.mode)

    def _parent(self, state: TrajectoryState) -> trace.Context | None:
        if not state.trace_id:
            return None
        parent = SpanContext(int(state.trace_id, 16), int(state.span_id, 16), is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(parent))

    def _observed(self, record: Callable[[pb.RunEvent], Awaitable[None]],
                  caller: _Caller) -> Callable[[pb.RunEvent], Awaitable[None]]:
        """`record`, with every event also shown to the policy (tool calls counted, images made the tenant's)."""
        policy = self._policy
        if policy is None:
            return record

        async def observed(event: pb.RunEvent) -> None:
            await record(event)
            await policy.observe(caller.principal, event)

        return observed

    async def _act(self, records: aredis.Redis, item: StepItem, state: TrajectoryState,
                   registry: ImageRegistry, caller: _Caller) -> _Result:
        tid = item.trajectory_id
        record = recorder.TrajectoryRecorder(records, tid, self._gw.trajectory_ttl_s)
        outcome = StepOutcome(tid)
        # The step's events are recorded together when it is done (they reach the request's one pipeline, sent
        # before the trainer gets the observation, as before): a trainer's action is whole, so its text is one
        # merged event per channel, never a run of deltas kept open in Redis meanwhile.
        events: list[pb.RunEvent] = []

        async def emit(event: pb.RunEvent) -> None:
            if event.WhichOneof("event") == "observation":
                outcome.observations.append(event.observation)
            events.append(event)

        sink = EventSink(tid, self._observed(emit, caller), seq=state.seq)
        state.steps += 1
        sink.step = state.steps
        metrics.step(state.mode)
        released: str | None = None
        with tracing.tracer.start_as_current_span(
                f"step {state.steps}", context=self._parent(state),
                attributes=tracing.step_attributes(state.steps, **{"toolfabric.trajectory.id": tid})):
            trajectory = self._loop.trajectory(self._scope(tid, state, caller), registry, state.tool_calls)
            if item.calls is not None:  # structured calls (MCP): nothing to parse
                parsed = ParsedStep(calls=list(item.calls))
            else:
                parsed = await self._loop.step.from_action(trajectory, sink, item.action)
            parts = await self._loop.step.observe(trajectory, sink, parsed)
            state.tool_calls = trajectory.tool_calls
            if parsed.calls:
                pass  # their observations are the outcome
            elif parsed.plan is not None or parsed.answer is not None:
                if parsed.plan is not None:
                    plan_json = json.dumps(parsed.plan, ensure_ascii=False)
                    await sink(answer=pb.FinalAnswer(text=plan_json, plan_json=plan_json))
                else:
                    await sink(answer=pb.FinalAnswer(text=parsed.answer or ""))
                released = "the model answered"
            elif item.calls is not None:
                added = registry.images[len(registry.images) - len(item.images):] if item.images else []
                outcome.text = ("added " + ", ".join(f"{i.name} ({i.width}x{i.height})" for i in added)
                                if added else "no calls and no images: nothing to do")
            else:
                outcome.valid, outcome.error = False, "; ".join(parsed.problems)
            outcome.text = outcome.text or "".join(p for p in parts if isinstance(p, str))
            outcome.images = [i for i in registry.images if i.step == state.steps]
            if released is None and item.is_last_step:
                released = "the trainer's last step"
            state.seq = sink.seq
            state.keep_images(registry.images)
            if released is not None:
                status = pb.STATUS_COMPLETED if released == "the model answered" else pb.STATUS_BUDGET_EXHAUSTED
                await self._end(records, tid, state, status, released, sink)
                outcome.done = True
        await record.record_many(events, close_run=True)
        return _Result(outcome, state, released)

    def _scope(self, tid: str, state: TrajectoryState, caller: _Caller) -> Scope:
        budget = self._cfg.max_tool_calls
        if caller.calls_left is not None:  # the tenant's calls per minute cap this step's calls too
            budget = min(budget, state.tool_calls + caller.calls_left)
        return Scope(trajectory_id=tid, question=state.question, mode=state.mode, model=state.model,
                     max_tool_calls=budget, tenant=caller.principal.tenant)

    async def _end(self, records: aredis.Redis, tid: str, state: TrajectoryState, status: pb.Status, reason: str,
                   sink: EventSink | None = None) -> None:
        if sink is None:
            record = recorder.TrajectoryRecorder(records, tid, self._gw.trajectory_ttl_s)
            sink = EventSink(tid, record.record, seq=state.seq)
            sink.step = state.steps
        usage = pb.Usage(steps=state.steps, phase_seconds={"total": time.time() - state.started})
        await sink(usage=usage)
        await sink(finished=pb.TrajectoryFinished(status=status, reason=reason))
        metrics.trajectory_finished(state.mode, names.status_name(status))


