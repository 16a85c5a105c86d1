"""The blocking client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from toolfabric.exceptions import from_rpc_error
from toolfabric.requests import MAX_MESSAGE_BYTES, MODES, ImageLike, RunResult, run_request, trace_metadata
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc

_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


class Client:
    """`Client("127.0.0.1:50051").ask("question", images=["photo.jpg"])`; use as a context manager."""

    def __init__(self, target: str = "127.0.0.1:50051", *, timeout_s: float | None = None) -> None:
        self._channel = grpc.insecure_channel(target, options=_OPTIONS)
        self._stub = pb_grpc.FabricStub(self._channel)
        self._timeout = timeout_s

    def events(self, question: str, images: list[ImageLike] | tuple[ImageLike, ...] = (),
               **options: Any) -> Iterator[pb.RunEvent]:
        """Stream the trajectory's events as they happen (same options as `ask`)."""
        call = self._stub.Run(run_request(question, images, **options), timeout=self._timeout,
                              metadata=trace_metadata())
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    def ask(self, question: str, images: list[ImageLike] | tuple[ImageLike, ...] = (), **options: Any) -> RunResult:
        """Run one turn to its end. Options: mode, max_steps, max_tool_calls, deadline_s, temperature,
        max_tokens, seed, model."""
        result = RunResult()
        for event in self.events(question, images, **options):
            result.add(event)
        return result

    def watch(self, trajectory_id: str, from_seq: int = 0) -> Iterator[pb.RunEvent]:
        """Re-attach to a trajectory (running, resumed elsewhere, or finished): its events with seq >= `from_seq`,
        then new ones as they happen, until `finished`. After a dropped Run stream, pass the last seq seen + 1."""
        call = self._stub.Watch(pb.WatchRequest(trajectory_id=trajectory_id, from_seq=from_seq),
                                timeout=self._timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    def cancel(self, trajectory_id: str) -> pb.CancelResponse:
        return self._unary(self._stub.Cancel, pb.CancelRequest(trajectory_id=trajectory_id))

    def trajectory(self, trajectory_id: str) -> pb.Trajectory:
        return self._unary(self._stub.GetTrajectory, pb.GetTrajectoryRequest(trajectory_id=trajectory_id))

    def tools(self, mode: str | None = None) -> list[pb.Tool]:
        request = pb.ListToolsRequest(mode=MODES[mode] if mode else pb.MODE_UNSPECIFIED)
        return list(self._unary(self._stub.ListTools, request).tools)

    def image(self, blob: str) -> pb.Image:
        return self._unary(self._stub.GetImage, pb.GetImageRequest(blob=blob))

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout or 30)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
