"""Where a lost trajectory stands, read from its record (the engine resumes from it: engine/resume.py)."""

from __future__ import annotations

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.engine.resume import Checkpoint, CompletedStep
from toolfabric_server.gateway import recorder


def checkpoint(record: pb.Trajectory, now_s: float) -> Checkpoint:
    """The longest prefix of complete steps in `record` (now_s: current Unix time, for the deadline)."""
    point = Checkpoint(last_seq=max((recorder.last_seq(e) for e in record.events), default=0))
    if record.HasField("created_at"):
        point.elapsed_s = max(0.0, now_s - record.created_at.ToNanoseconds() / 1e9)
    point.resumes = sum(1 for e in record.events if e.HasField("resumed"))
    by_step: dict[int, list[pb.RunEvent]] = {}
    for event in record.events:
        kind = event.WhichOneof("event")
        if kind == "answer":
            point.answer = event.answer.text
        if kind == "resumed":  # a step cut short by an earlier loss is run again: forget its partial events
            for step in [s for s in by_step if s >= event.resumed.from_step]:
                del by_step[step]
            continue
        if kind in {"text", "tool_call", "observation", "tokens"} and event.step > 0:
            by_step.setdefault(event.step, []).append(event)
    for number in range(1, max(by_step, default=0) + 1):
        events = by_step.get(number, [])
        text = "".join(e.text.text for e in events if e.HasField("text"))
        calls = {e.tool_call.call_id for e in events if e.HasField("tool_call")}
        observations = [e.observation for e in events if e.HasField("observation")]
        if not text or not observations or calls - {o.call_id for o in observations}:
            break
        tokens = next((e.tokens for e in events if e.HasField("tokens")), None)
        point.steps.append(CompletedStep(number, text, observations, tokens))
    return point
