"""The Fabric gRPC service: Run, Cancel, Watch, GetTrajectory, ListTools, Step, GetImage, ListTrajectories.

A door: it turns RPCs into calls of the shared services (gateway/runs.py for Run, gateway/stepping for Step)
and their outcomes into messages and status codes. gateway/server.py wires it with the other doors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import grpc
import redis.asyncio as aredis
from redis.exceptions import RedisError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc
from toolfabric.v1.names import MODE_NAMES, MODES
from toolfabric_server.common import images
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.errors import BlobNotFound, InvalidImage
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.telemetry import setup as telemetry
from toolfabric_server.common.tools import Catalog
from toolfabric_server.gateway import admission, recorder
from toolfabric_server.gateway.admission import AdmissionRefused
from toolfabric_server.gateway.archive import TENANT_LABEL, Archive
from toolfabric_server.gateway.exceptions import HandedOver, InvalidRequest, LimitExceeded, ModelNotServed, NotYours
from toolfabric_server.gateway.fabric import step as step_protos
from toolfabric_server.gateway.policy import Policy, Principal, scoped
from toolfabric_server.gateway.policy.grpc import current_principal
from toolfabric_server.gateway.runs import Runs
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.stepping import StepService
from toolfabric_server.gateway.validation import check_length
from toolfabric_server.model.errors import ModelUnavailable
from toolfabric_server.store.errors import BadPageToken, StoreUnavailable


class FabricServicer(pb_grpc.FabricServicer):
    def __init__(self, runs: Runs, redis_client: aredis.Redis, blobs: AsyncBlobStore, policy: Policy,
                 gw: GatewaySettings, common: CommonSettings, catalog: Catalog, archive: Archive | None = None,
                 step: StepService | None = None) -> None:
        self._runs, self._redis, self._blobs, self._policy = runs, redis_client, blobs, policy
        self._archive, self._step, self._catalog = archive, step, catalog
        self._gw, self._common = gw, common

    async def _allowed(self, context: grpc.aio.ServicerContext, trajectory_id: str | None = None,
                       blob: str | None = None) -> tuple[Principal, str]:
        """The caller (the interceptor resolved it) and the stored id of `trajectory_id` for that caller;
        NOT_FOUND for another tenant's trajectory or image."""
        principal = current_principal()
        tid = scoped(principal, trajectory_id or "")
        try:
            if trajectory_id is not None:
                await self._policy.ownership.check_trajectory(principal, tid)
            if blob is not None:
                await self._policy.ownership.check_image(principal, blob)
        except NotYours as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return principal, tid

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        # Admission first, before any heavy work, its wait measured from the call (gateway/admission.py).
        queued = admission.queued_s(context.invocation_metadata(), context.time_remaining())
        principal, _ = await self._allowed(context)
        try:
            async with self._policy.admission.slot(queued) as admitted:
                async for event in self._run(request, principal, context, admitted):
                    yield event
        except AdmissionRefused as exc:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(int(exc.retry_after_s * 1000))),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    async def _run(self, request: pb.RunRequest, principal: Principal, context: grpc.aio.ServicerContext,
                   admitted: admission.Admitted) -> AsyncIterator[pb.RunEvent]:
        if self._runs.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway shutting down; send the Run to another replica")
        try:
            spec = await self._runs.prepare(request, principal)
        except NotYours as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            return
        except ModelNotServed as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        except ModelUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"model_unavailable: {exc}")
            return
        except RedisError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable, no trajectory started: {exc}")
            return
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        except LimitExceeded as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                                (("retry-after", str(int(exc.retry_after_s))),))
            return
        spec.admitted_at, spec.admission_wait_s = admitted.at, admitted.wait_s  # the deadline counts from here
        trace_context = telemetry.context_from_metadata(context.invocation_metadata())
        try:
            async with contextlib.aclosing(self._runs.stream(spec, request.mode, trace_context)) as events:
                async for event in events:
                    yield event
        except HandedOver as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except RedisError as exc:  # before the first event: nothing started
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable, no trajectory started: {exc}")

    async def _checked_id(self, value: str, context: grpc.aio.ServicerContext, name: str = "trajectory_id") -> str:
        try:
            check_length(name, value, self._gw.max_id_chars)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return value

    def cancel_local(self, trajectory_id: str) -> bool:
        return self._runs.cancel_local(trajectory_id)

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelResponse:
        _, tid = await self._allowed(context, await self._checked_id(request.trajectory_id, context))
        status = await self._runs.cancel(tid)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no trajectory {request.trajectory_id!r}")
        return _cancel_response(status == pb.STATUS_CANCELLED, pb.Status.ValueType(status or 0))

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        _, tid = await self._allowed(context, await self._checked_id(request.trajectory_id, context))
        if await recorder.status_of(self._redis, tid) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no trajectory {request.trajectory_id!r} (unknown or its record expired)")
        last = request.from_seq - 1
        try:
            async for event in recorder.watch(self._redis, tid, request.from_seq, self._gw.watch_poll_s):
                last = event.seq
                yield event
        except RedisError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable: {exc}; Watch again from "
                                                             f"seq {last + 1}")

    async def GetTrajectory(self, request: pb.GetTrajectoryRequest,
                            context: grpc.aio.ServicerContext) -> pb.Trajectory:
        principal, tid = await self._allowed(context, await self._checked_id(request.trajectory_id, context))
        found = await recorder.load(self._redis, tid)
        if found is not None and self._archive is not None and not recorder.is_complete(found):
            await self._archive.add_stored_fields(found)  # a record from an earlier version
        if found is None and self._archive is not None:  # Redis expired it: the durable store keeps it
            found = await self._archive.trajectory(tid)
            try:
                if found is not None:  # the store's copy passes the same owner check as Redis's
                    self._policy.ownership.check_record(principal, found)
            except NotYours as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no trajectory {request.trajectory_id!r} (unknown or its record expired)")
            return pb.Trajectory()
        found.resumes = sum(1 for e in found.events if e.HasField("resumed"))
        if found.status == pb.STATUS_RUNNING:
            found.gateway = await self._runs.leases.holder(tid) or ""
        return found

    async def ListTools(self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext) -> pb.ListToolsResponse:
        await self._allowed(context)
        cat = self._catalog
        mode = MODE_NAMES.get(request.mode)
        specs = cat.visible(mode) if mode else [s for s in cat.specs if not s.hidden]
        return pb.ListToolsResponse(tools=[
            pb.Tool(name=s.name, service=s.service, description=s.description,
                    parameters_json_schema=json.dumps(s.json_schema()), aliases=list(s.aliases),
                    modes=sorted(MODES[m] for m in s.modes))
            for s in specs
        ])

    async def Step(self, request: pb.StepRequest, context: grpc.aio.ServicerContext) -> pb.StepResponse:
        principal, _ = await self._allowed(context)
        if self._step is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this gateway serves no step API")
        try:
            outcomes = await self._step.step(step_protos.items(request), principal)  # type: ignore[union-attr]
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except LimitExceeded as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                                (("retry-after", str(int(exc.retry_after_s))),))
        return step_protos.response(outcomes)

    async def GetImage(self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext) -> pb.Image:
        await self._checked_id(request.blob, context, "blob")
        await self._allowed(context, blob=request.blob)
        try:
            data = await self._blobs.get(request.blob)
        except BlobNotFound as exc:
            stored = await self._archive.image(request.blob) if self._archive is not None else None
            if stored is not None:
                return stored
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        try:
            info = images.inspect(data, self._common.max_image_pixels, self._common.max_image_pixels_per_byte)
        except InvalidImage:
            return pb.Image(blob=request.blob, data=data, mime_type="application/octet-stream")
        return pb.Image(blob=request.blob, data=data, mime_type=info.mime_type, width=info.width, height=info.height)

    async def ListTrajectories(self, request: pb.ListTrajectoriesRequest,
                               context: grpc.aio.ServicerContext) -> pb.ListTrajectoriesResponse:
        principal, _ = await self._allowed(context)
        if self._archive is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this gateway has no durable store")
        if principal.tenant:  # a tenant lists only its own trajectories
            request.labels[TENANT_LABEL] = principal.tenant
        try:
            return await self._archive.list_page(request)  # type: ignore[union-attr]
        except (InvalidRequest, BadPageToken) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise


def _cancel_response(cancelled: bool, status: pb.Status) -> pb.CancelResponse:
    # `status` (the name) stays filled for v1 clients that read it; `trajectory_status` is the enum.
    return pb.CancelResponse(cancelled=cancelled, status=pb.Status.Name(status), trajectory_status=status)
