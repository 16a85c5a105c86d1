"""The trajectories of this gateway: what every door (gRPC Run, the HTTP API) calls to start and stream one.

`prepare` turns a RunRequest into a RunSpec (InvalidRequest saying what is wrong, ModelNotServed /
ModelUnavailable for the model, NotYours, LimitExceeded for the tenant); `stream` runs the agent loop as its
own task, records every event before the caller sees it (gateway/delivery.py) and yields them. Closing the
stream early (the client went away) cancels the trajectory; so does `cancel_local` (Cancel from this
replica, or from another one through Redis).

Each running trajectory holds a lease (gateway/leases.py); `reap` resumes the trajectories of a lost gateway
(gateway/checkpoints.py reads where it stood, engine/resume.py). On shutdown `drain` hands trajectories still
running after the grace period to another replica instead of cancelling them; their streams end with HandedOver
(the client can Watch them).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import redis.asyncio as aredis
from redis.exceptions import RedisError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.engine import spec as specs
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.ports import ServingModel
from toolfabric_server.engine.resume import Checkpoint
from toolfabric_server.engine.spec import PriorTurn, RunSpec
from toolfabric_server.gateway import conversations, recorder
from toolfabric_server.gateway.archive import TENANT_LABEL, Archive, check_labels
from toolfabric_server.gateway.checkpoints import checkpoint
from toolfabric_server.gateway.delivery import Delivery
from toolfabric_server.gateway.exceptions import HandedOver, InvalidRequest, ModelNotServed, NotYours
from toolfabric_server.gateway.leases import Leases
from toolfabric_server.gateway.policy import ANONYMOUS, Policy, Principal, scoped
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.validation import RequestValidator

log = logging.getLogger(__name__)
CANCEL_CHANNEL = "toolfabric:cancel"
_CANCEL_REQUESTED = "toolfabric:cancel-requested:"


@dataclass
class _Running:
    delivery: Delivery
    task: asyncio.Task[None] = field(init=False)
    started: bool = False  # its coroutine has begun (and so will run its own clean-up)
    cancel_requested: bool = False  # cancelled before it began: it ends as cancelled as soon as it does

    def cancel(self) -> None:
        """Cancels the trajectory. A task cancelled before its first step never runs its coroutine, so nothing
        would record how it ended, release its lease or its slot, or end its stream: such a task is told instead."""
        if self.started:
            self.task.cancel()
        else:
            self.cancel_requested = True


class Runs:
    def __init__(self, loop: AgentLoop, validator: RequestValidator, redis_client: aredis.Redis,
                 model: ServingModel, gw: GatewaySettings, policy: Policy, blobs: AsyncBlobStore,
                 leases: Leases, archive: Archive | None = None) -> None:
        self._loop, self._validator, self._redis, self._model, self._gw = loop, validator, redis_client, model, gw
        self.policy, self._blobs, self._archive, self.leases = policy, blobs, archive, leases
        self._running: dict[str, _Running] = {}
        self.draining = False

    async def prepare(self, request: pb.RunRequest, principal: Principal = ANONYMOUS,
                      history: list[PriorTurn] | None = None) -> RunSpec:
        """The validated spec of `request`, admitted for `principal`'s tenant (a concurrency slot taken, budgets
        capped): stream it next. `history`: earlier turns the client sent (the HTTP API's messages), whose images
        are the request's first images; a parent trajectory takes precedence."""
        spec = await self._validator.validate(request)
        check_labels(request)
        spec.tenant = principal.tenant
        spec.trajectory_id = scoped(principal, spec.trajectory_id)  # ids are the tenant's (policy/ownership.py)
        spec.labels = {**request.labels, **({TENANT_LABEL: principal.tenant} if principal.tenant else {})}
        spec.eval_run = request.eval_run
        if request.parent_trajectory_id:
            parent = scoped(principal, request.parent_trajectory_id)
            await self.policy.ownership.check_trajectory(principal, parent)
            if await recorder.status_of(self._redis, parent) is None:  # unknown is "not found", like another's
                raise NotYours(f"no trajectory {request.parent_trajectory_id!r} (unknown or its record expired)")
            earlier = await conversations.load(self._redis, parent)
            if request.conversation_id and scoped(principal, request.conversation_id) != earlier.conversation_id:
                raise InvalidRequest(f"conversation_id {request.conversation_id!r} is not the parent's conversation "
                                     f"({earlier.conversation_id!r})")
            gone = set(await self._blobs.keep([i.ref for i in earlier.images]))
            if gone:
                names = ", ".join(i.name for i in earlier.images if i.ref in gone)
                raise InvalidRequest(f"images of the earlier turns have expired from the blob store ({names}; "
                                     "TOOLFABRIC_BLOB_TTL_S): start a new conversation with them")
            spec.history, spec.carried, spec.conversation_id = earlier.turns, earlier.images, earlier.conversation_id
            spec.parent_trajectory_id = parent
        else:
            spec.history = history or []
            spec.conversation_id = scoped(principal, request.conversation_id) or spec.trajectory_id
        # serves() raises ModelUnavailable when Triton (or the model's completions server) is down (→ UNAVAILABLE).
        if not await self._model.serves(spec.model):
            raise ModelNotServed(f"model {spec.model!r} is not being served by {self._model.server_of(spec.model)} "
                                 "(not loaded or not ready)")
        await self.policy.limits.admit(principal, spec)
        return spec

    async def stream(self, spec: RunSpec, mode: pb.Mode,
                     trace_context: contextvars.Context | None = None) -> AsyncGenerator[pb.RunEvent, None]:
        """Runs a prepared trajectory, yielding its events; close it early (aclosing) to cancel the trajectory.
        RedisError before the first event: nothing started. HandedOver at the end: another replica goes on."""
        principal = Principal(spec.tenant)
        try:
            record = recorder.TrajectoryRecorder(self._redis, spec.trajectory_id, self._gw.trajectory_ttl_s,
                                                 mirror=self._archive.event if self._archive else None)
            await record.begin(spec.question, mode or pb.MODE_DEEP_RESEARCH, spec.model, tenant=spec.tenant,
                               conversation_id=spec.conversation_id,
                               parent_trajectory_id=spec.parent_trajectory_id, labels=spec.labels,
                               eval_run=spec.eval_run, budgets=pb.Budgets(
                                   max_steps=spec.max_steps, max_tool_calls=spec.max_tool_calls,
                                   deadline_s=spec.deadline_s))
            await recorder.set_field(self._redis, spec.trajectory_id, "spec", specs.to_json(spec))
            await self.leases.acquire(spec.trajectory_id)
        except BaseException:
            await self.policy.limits.release(principal, spec.trajectory_id)
            raise
        if self._archive is not None:
            self._archive.begin(spec, mode)
        queue: asyncio.Queue[pb.RunEvent | None] = asyncio.Queue()
        delivery = Delivery(record, spec.trajectory_id, self._gw.record_retry_s, queue)
        running = self._start(spec, delivery, context=trace_context)
        metrics.stream_opened()
        try:
            while (event := await queue.get()) is not None:
                yield event
            if delivery.detached:
                raise HandedOver(f"gateway shutting down; trajectory {spec.trajectory_id} goes on on another "
                                 f"replica: Watch it from seq {delivery.last_seq + 1}")
        finally:
            metrics.stream_closed()
            if not running.task.done() and not delivery.detached:  # the client went away: cancel the trajectory
                running.cancel()
            # wait, not gather: a gather cancelled again (anyio cancels level-triggered) would cancel the
            # trajectory a second time, in the middle of recording how it ended.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([running.task])

    def _start(self, spec: RunSpec, delivery: Delivery, checkpoint: Checkpoint | None = None,
               context: contextvars.Context | None = None) -> _Running:
        running = _Running(delivery)
        running.task = asyncio.create_task(self._drive(spec, running, checkpoint),
                                           name=f"trajectory-{spec.trajectory_id}", context=context)
        self._running[spec.trajectory_id] = running
        return running

    async def _drive(self, spec: RunSpec, running: _Running, checkpoint: Checkpoint | None) -> None:
        running.started = True  # no await before the try below: from here on its finally runs
        tid, principal, delivery = spec.trajectory_id, Principal(spec.tenant), running.delivery

        async def emit(event: pb.RunEvent) -> None:
            await delivery.emit(event)
            await self.policy.observe(principal, event)

        try:
            if running.cancel_requested:
                raise asyncio.CancelledError
            await self._loop.run(spec, emit, checkpoint, self.leases.owner)
        except asyncio.CancelledError:  # cancelled before the loop was inside its own handling
            if delivery.finished is None and not delivery.detached:
                await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(status=pb.STATUS_CANCELLED,
                                                                                  reason="cancelled")))
        except Exception as exc:  # the loop catches its own faults; this is a fault in emitting them
            log.exception("trajectory %s stopped without finishing", tid)
            if delivery.finished is None:
                await delivery.fail("internal", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if delivery.finished is None and not delivery.detached:
                await delivery.fail("internal", "the trajectory stopped without finishing")
            if self._running.get(tid) is not None and self._running[tid].delivery is delivery:
                del self._running[tid]
            with contextlib.suppress(RedisError):  # else the lease expires and the reaper tidies up
                await self.leases.release(tid, finished=not delivery.detached)
            with contextlib.suppress(RedisError):  # else the slot expires with the deadline
                await self.policy.limits.release(principal, tid)
            delivery.close()

    def cancel_local(self, trajectory_id: str) -> bool:
        running = self._running.get(trajectory_id)
        if running is None or running.task.done():
            return False
        running.cancel()
        return True

    async def cancel(self, tid: str) -> int | None:
        """Cancels `tid` wherever it runs and says how it stands afterwards (None: no such trajectory)."""
        running = self._running.get(tid)
        if running is not None and self.cancel_local(tid):
            await asyncio.wait([running.task], timeout=self._gw.cancel_wait_s)
            return running.delivery.finished.status if running.delivery.finished else pb.STATUS_RUNNING
        status = await recorder.status_of(self._redis, tid)
        if status is None or status != pb.STATUS_RUNNING:
            return status
        if await self.leases.holder(tid) is None and await self.leases.claim(tid):
            # Its gateway is gone and no replica has taken it over yet: it ends here, as cancelled.
            delivery = await self._take_delivery(tid)
            await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(
                status=pb.STATUS_CANCELLED, reason="cancelled (its gateway had been lost)")))
            await self.leases.release(tid, finished=True)
            return pb.STATUS_CANCELLED
        # Running on another replica: every gateway listens on the cancel channel. The request is also kept, so a
        # replica taking over from a lost gateway ends it instead of resuming it. Answer with what happened.
        await self._redis.set(_CANCEL_REQUESTED + tid, 1, ex=3600)
        await self._redis.publish(CANCEL_CHANNEL, tid)
        deadline = time.monotonic() + self._gw.cancel_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            status = await recorder.status_of(self._redis, tid)
            if status != pb.STATUS_RUNNING:
                break
        return status

    async def _take_delivery(self, tid: str) -> Delivery:
        record = self._recorder(tid)
        await record.adopt_open()
        found = await recorder.load(self._redis, tid)
        last = max((recorder.last_seq(e) for e in found.events), default=0) if found else 0
        return Delivery(record, tid, self._gw.record_retry_s, first_seq=last)

    def _recorder(self, tid: str) -> recorder.TrajectoryRecorder:
        return recorder.TrajectoryRecorder(self._redis, tid, self._gw.trajectory_ttl_s,
                                           mirror=self._archive.event if self._archive else None)

    async def take_over(self, tid: str) -> None:
        """A trajectory whose lease this gateway just claimed: resume it, or end it with the reason."""
        record = self._recorder(tid)
        await record.adopt_open()  # the text the lost gateway's client saw of the step it was streaming
        found = await recorder.load(self._redis, tid)
        if found is None or found.status != pb.STATUS_RUNNING:
            await self.leases.release(tid, finished=True)
            return
        point = checkpoint(found, time.time())
        raw_spec = await recorder.get_field(self._redis, tid, "spec")
        spec = specs.from_json(raw_spec) if raw_spec is not None else None
        delivery = Delivery(record, tid, self._gw.record_retry_s, first_seq=point.last_seq)
        if point.answer is not None:  # it had answered; only its end was lost
            await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(
                status=pb.STATUS_COMPLETED, reason="the model answered", resumes=point.resumes)))
        elif await self._redis.exists(_CANCEL_REQUESTED + tid):
            await delivery.emit(delivery.event(finished=pb.TrajectoryFinished(
                status=pb.STATUS_CANCELLED, reason="cancelled (its gateway had been lost)", resumes=point.resumes)))
        elif spec is None or not self._gw.resume_lost:
            await delivery.fail("gateway_lost", "gateway lost: its lease expired while the trajectory ran")
        else:
            log.warning("resuming trajectory %s from step %d (its gateway was lost)", tid, point.next_step)
            self._start(spec, delivery, point)
            return
        await self.leases.release(tid, finished=True)

    async def reap(self) -> None:
        """Runs for the gateway's life: finds trajectories whose lease expired and takes them over."""
        while True:
            await asyncio.sleep(self._gw.reaper_interval_s)
            if self.draining:
                return
            try:
                for tid in await self.leases.orphans():
                    if await self.leases.claim(tid):
                        await self.take_over(tid)
            except RedisError as exc:
                log.warning("reaper: Redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("reaper failed; retrying")

    async def drain(self, grace_s: float) -> None:
        """Shutdown: running trajectories get `grace_s` to finish; the rest are handed to another replica
        (their lease released, so a reaper resumes them at once) and their clients told to Watch there."""
        self.draining = True
        tasks = [r.task for r in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        for tid, running in list(self._running.items()):
            if running.task.done():
                continue
            running.delivery.detached = True
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(running.task, return_exceptions=True)
            log.warning("handed trajectory %s to another replica at shutdown", tid)
