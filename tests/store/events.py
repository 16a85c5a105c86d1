"""Trajectory events as the gateway's recorder hands them to the store."""

from __future__ import annotations

import io

from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blobs import ref_for
from toolfabric_server.store.trajectories import NewTrajectory, StoredImage


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def stored(data: bytes) -> tuple[str, StoredImage]:
    return ref_for(data), StoredImage(data, "image/png", 8, 6)


def new(trajectory_id: str, question: str = "Who is this?", *, created_at: float = 1_700_000_000.0,
        model: str = "toolfabric_baseline", mode: int = pb.MODE_DEEP_RESEARCH, labels: dict[str, str] | None = None,
        eval_run: str = "") -> NewTrajectory:
    return NewTrajectory(trajectory_id, question, mode, model, created_at, labels or {}, eval_run,
                         {"max_steps": 8, "max_tool_calls": 20, "deadline_s": 60.0}, {"temperature": 0.2})


def _event(trajectory_id: str, seq: int, step: int, at: float, **kind: object) -> pb.RunEvent:
    time = Timestamp()
    time.FromNanoseconds(int(at * 1e9))
    return pb.RunEvent(trajectory_id=trajectory_id, seq=seq, step=step, time=time, **kind)  # type: ignore[arg-type]


def run(trajectory_id: str, *, inputs: list[str] = (), outputs: list[str] = (), answer: str = "Eileen Collins",
        status: int = pb.STATUS_COMPLETED, at: float = 1_700_000_010.0) -> list[pb.RunEvent]:
    """A whole two-step trajectory: started, thinking, a tool call, its observation (with images), the answer."""
    ref = lambda blob: pb.ImageRef(name="<image 1>", blob=blob, width=8, height=6, mime_type="image/png")  # noqa: E731
    return [
        _event(trajectory_id, 1, 0, at,
               started=pb.TrajectoryStarted(trace_id="ab" * 16, images=[ref(b) for b in inputs])),
        _event(trajectory_id, 2, 1, at, text=pb.TextDelta(channel=pb.CHANNEL_THINK, text="I should crop the face.")),
        _event(trajectory_id, 3, 1, at, tool_call=pb.ToolCall(call_id="c1", name="crop", arguments_json="{}")),
        _event(trajectory_id, 4, 1, at, observation=pb.Observation(call_id="c1", name="crop", text="done",
                                                                   images=[ref(b) for b in outputs])),
        _event(trajectory_id, 5, 2, at, text=pb.TextDelta(channel=pb.CHANNEL_ANSWER, text=answer)),
        _event(trajectory_id, 6, 2, at, answer=pb.FinalAnswer(text=answer)),
        _event(trajectory_id, 7, 2, at, usage=pb.Usage(steps=2, tool_calls={"crop": 1}, input_tokens=50)),
        _event(trajectory_id, 8, 2, at + 1, finished=pb.TrajectoryFinished(status=status, reason="answered")),
    ]
