"""The asyncio client (same surface as `Client`, awaitable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from toolfabric.connection import auth_metadata, credentials
from toolfabric.exceptions import from_rpc_error
from toolfabric.listing import list_request
from toolfabric.requests import (
    MAX_MESSAGE_BYTES,
    MODES,
    ImageLike,
    RunResult,
    call_metadata,
    run_request,
    step_request,
    trace_metadata,
)
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc

# Each client gets its own connection (gRPC otherwise shares one between every channel of a process to the same
# target): several clients then spread over the gateway processes that share a port (SO_REUSEPORT balances
# connections, not calls; docs/reliability.md section 5).
_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.use_local_subchannel_pool", 1)]


class AsyncClient:
    def __init__(self, target: str = "127.0.0.1:50051", *, timeout_s: float | None = None,
                 api_key: str | None = None, tls: bool = False, root_certificates: bytes | None = None) -> None:
        """`api_key` (default `$TOOLFABRIC_API_KEY`) is sent with every call; `tls`/`root_certificates`
        (or `$TOOLFABRIC_TLS_CA_FILE`) make the channel TLS."""
        creds = credentials(tls, root_certificates)
        self._channel = (grpc.aio.secure_channel(target, creds, options=_OPTIONS) if creds
                         else grpc.aio.insecure_channel(target, options=_OPTIONS))
        self._auth = auth_metadata(api_key)
        self._stub = pb_grpc.FabricStub(self._channel)
        self._timeout = timeout_s

    async def events(self, question: str, images: list[ImageLike] | tuple[ImageLike, ...] = (),
                     **options: Any) -> AsyncIterator[pb.RunEvent]:
        call = self._stub.Run(run_request(question, images, **options), timeout=self._timeout,
                              metadata=self._auth + trace_metadata() + call_metadata(self._timeout))
        try:
            async for event in call:
                yield event
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def ask(self, question: str, images: list[ImageLike] | tuple[ImageLike, ...] = (),
                  **options: Any) -> RunResult:
        result = RunResult()
        async for event in self.events(question, images, **options):
            result.add(event)
        return result

    async def watch(self, trajectory_id: str, from_seq: int = 0) -> AsyncIterator[pb.RunEvent]:
        """Re-attach to a trajectory: its events with seq >= `from_seq`, then new ones, until `finished`."""
        call = self._stub.Watch(pb.WatchRequest(trajectory_id=trajectory_id, from_seq=from_seq),
                                timeout=self._timeout, metadata=self._auth)  # Watch needs the key like every RPC
        try:
            async for event in call:
                yield event
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def cancel(self, trajectory_id: str) -> pb.CancelResponse:
        return await self._unary(self._stub.Cancel, pb.CancelRequest(trajectory_id=trajectory_id))

    async def trajectory(self, trajectory_id: str) -> pb.Trajectory:
        return await self._unary(self._stub.GetTrajectory, pb.GetTrajectoryRequest(trajectory_id=trajectory_id))

    async def tools(self, mode: str | None = None) -> list[pb.Tool]:
        request = pb.ListToolsRequest(mode=MODES[mode] if mode else pb.MODE_UNSPECIFIED)
        return list((await self._unary(self._stub.ListTools, request)).tools)

    async def step(self, trajectory_ids: list[str], actions: list[str], **options: Any) -> list[pb.StepObservation]:
        """One step of many trajectories whose model runs elsewhere (an RL trainer): each action is parsed,
        its tool calls run, and the observation the model reads next comes back, in order. Options:
        finish, is_last_step (lists), images (a list of images per trajectory), mode, model, questions."""
        request = step_request(trajectory_ids, actions, **options)
        return list((await self._unary(self._stub.Step, request)).observations)

    async def image(self, blob: str) -> pb.Image:
        return await self._unary(self._stub.GetImage, pb.GetImageRequest(blob=blob))

    async def list_trajectories(self, **filters: Any) -> pb.ListTrajectoriesResponse:
        """One page of recorded trajectories, newest first. Filters: status (names), model, mode, labels,
        eval_run, since, until (datetime or epoch seconds), question (substring), page_size, page_token."""
        return await self._unary(self._stub.ListTrajectories, list_request(**filters))

    async def iter_trajectories(self, **filters: Any) -> AsyncIterator[pb.TrajectorySummary]:
        """Every matching trajectory, page after page."""
        token = ""
        while True:
            page = await self.list_trajectories(**filters, page_token=token)
            for summary in page.trajectories:
                yield summary
            token = page.next_page_token
            if not token:
                return

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            timeout = self._timeout or 30  # declared too: the step doors measure admission from the call
            return await method(request, timeout=timeout, metadata=self._auth + call_metadata(timeout))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
