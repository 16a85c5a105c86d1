"""The asyncio client (same surface as `Client`, awaitable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from toolfabric.exceptions import from_rpc_error
from toolfabric.requests import MAX_MESSAGE_BYTES, MODES, ImageLike, RunResult, run_request, trace_metadata
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc

_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


class AsyncClient:
    def __init__(self, target: str = "127.0.0.1:50051", *, timeout_s: float | None = None) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=_OPTIONS)
        self._stub = pb_grpc.FabricStub(self._channel)
        self._timeout = timeout_s

    async def events(self, question: str, images: list[ImageLike] | tuple[ImageLike, ...] = (),
                     **options: Any) -> AsyncIterator[pb.RunEvent]:
        call = self._stub.Run(run_request(question, images, **options), timeout=self._timeout,
                              metadata=trace_metadata())
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
                                timeout=self._timeout)
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

    async def image(self, blob: str) -> pb.Image:
        return await self._unary(self._stub.GetImage, pb.GetImageRequest(blob=blob))

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout or 30)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
