"""Starting a trajectory and streaming its events: what every door (gRPC Run, the HTTP API) calls.

`prepare` turns a RunRequest into a RunSpec (or raises InvalidRequest saying what is wrong);
`stream` runs the agent loop as its own task, records every event and yields them as they happen.
Closing the stream early (the client went away) cancels the trajectory; so does `cancel_local`
(Cancel from this replica, or from another one through Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncGenerator

import redis.asyncio as aredis

from gateway import conversations, recorder
from gateway.archive import TENANT_LABEL, Archive, check_labels
from gateway.auth import ANONYMOUS, Principal
from gateway.conversations import PriorTurn
from gateway.exceptions import InvalidRequest, ModelNotServed
from gateway.loop import AgentLoop, RunSpec
from gateway.tenants import Tenants
from gateway.validation import RequestValidator
from services.common.blobs import AsyncBlobStore
from services.common.settings import GatewaySettings
from services.common.telemetry import metrics
from services.model.triton_client import TritonModel
from toolfabric.v1 import fabric_pb2 as pb


class Runs:
    def __init__(self, loop: AgentLoop, validator: RequestValidator, redis_client: aredis.Redis,
                 model: TritonModel, gw: GatewaySettings, tenants: Tenants, blobs: AsyncBlobStore,
                 archive: Archive | None = None) -> None:
        self._loop, self._validator, self._redis, self._model, self._gw = loop, validator, redis_client, model, gw
        self.tenants, self._blobs, self._archive = tenants, blobs, archive
        self._running: dict[str, asyncio.Task[tuple[pb.Status, str]]] = {}

    async def prepare(self, request: pb.RunRequest, principal: Principal = ANONYMOUS,
                      history: list[PriorTurn] | None = None) -> RunSpec:
        """The validated spec of `request`, admitted for `principal`'s tenant (a concurrency slot taken, budgets
        capped): stream it next. InvalidRequest (ModelNotServed for a model Triton lacks), NotYours (a parent of
        another tenant) or LimitExceeded if not. `history`: earlier turns the client sent (the HTTP API's
        messages), whose images are the request's first images; a parent trajectory takes precedence."""
        spec = await self._validator.validate(request)
        check_labels(request)
        spec.tenant = principal.tenant
        spec.labels = {**request.labels, **({TENANT_LABEL: principal.tenant} if principal.tenant else {})}
        spec.eval_run = request.eval_run
        if request.parent_trajectory_id:
            await self.tenants.check_trajectory(principal, request.parent_trajectory_id)
            earlier = await conversations.load(self._redis, request.parent_trajectory_id)
            if request.conversation_id and request.conversation_id != earlier.conversation_id:
                raise InvalidRequest(f"conversation_id {request.conversation_id!r} is not the parent's conversation "
                                     f"({earlier.conversation_id!r})")
            gone = set(await self._blobs.keep([i.ref for i in earlier.images]))
            if gone:
                names = ", ".join(i.name for i in earlier.images if i.ref in gone)
                raise InvalidRequest(f"images of the earlier turns have expired from the blob store ({names}; "
                                     "TOOLFABRIC_BLOB_TTL_S): start a new conversation with them")
            spec.history, spec.carried, spec.conversation_id = earlier.turns, earlier.images, earlier.conversation_id
            spec.parent_trajectory_id = request.parent_trajectory_id
        else:
            spec.history = history or []
            spec.conversation_id = request.conversation_id or spec.trajectory_id
        if not await self._model.ready(spec.model):
            raise ModelNotServed(f"model {spec.model!r} is not being served by Triton (not loaded or not ready)")
        await self.tenants.admit(principal, spec)
        return spec

    async def stream(self, spec: RunSpec, mode: pb.Mode,
                     trace_context: contextvars.Context | None = None) -> AsyncGenerator[pb.RunEvent, None]:
        """Runs a prepared trajectory, yielding its events; close it early (aclosing) to cancel the trajectory."""
        principal = Principal(spec.tenant)
        queue: asyncio.Queue[pb.RunEvent | None] = asyncio.Queue()
        if self._archive is not None:
            self._archive.begin(spec, mode)
        record = recorder.TrajectoryRecorder(self._redis, spec.trajectory_id, self._gw.trajectory_ttl_s,
                                             mirror=self._archive.event if self._archive else None)
        await record.begin(spec.question, mode or pb.MODE_DEEP_RESEARCH, spec.model, tenant=spec.tenant,
                           conversation_id=spec.conversation_id, parent_trajectory_id=spec.parent_trajectory_id)

        async def emit(event: pb.RunEvent) -> None:
            await record.record(event)
            await self.tenants.observe(principal, event)
            queue.put_nowait(event)

        async def drive() -> tuple[pb.Status, str]:
            try:
                return await self._loop.run(spec, emit)
            finally:
                try:  # in the trajectory's own task: a client that went away cannot interrupt it
                    await self.tenants.release(principal, spec.trajectory_id)
                finally:
                    queue.put_nowait(None)

        # A caller that sends W3C trace context gets the trajectory in its own trace.
        task = asyncio.create_task(drive(), name=f"trajectory-{spec.trajectory_id}", context=trace_context)
        self._running[spec.trajectory_id] = task
        metrics.stream_opened()
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            metrics.stream_closed()
            if not task.done():  # the client went away: the trajectory is cancelled
                task.cancel()
            # wait, not gather: a gather cancelled again (anyio cancels level-triggered) would cancel the
            # trajectory a second time, in the middle of recording how it ended.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
            self._running.pop(spec.trajectory_id, None)

    def cancel_local(self, trajectory_id: str) -> bool:
        task = self._running.get(trajectory_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True
