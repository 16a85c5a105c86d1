"""Resuming a trajectory whose gateway was lost, from its record.

At start the gateway stores the validated request (`save_spec`) beside the record. The record holds every
event; a step is complete when its model text and an observation for each of its calls are recorded. A
resumed trajectory keeps the complete steps as they are (their tool results are not run again), rebuilds the
conversation, image registry and tool-call budget from them, and runs again from the first incomplete step
with what is left of its deadline. Token counts of the lost gateway's steps are not recorded until the end,
so a resumed trajectory's usage counts tokens from the resume on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import redis.asyncio as aredis

from gateway import recorder
from gateway.conversations import PriorTurn
from gateway.images import RegisteredImage
from gateway.loop import InputImage, RunSpec
from toolfabric.v1 import fabric_pb2 as pb

# Error kinds of calls the loop refused before sending: they did not count against the tool-call budget.
_REFUSED = {"unknown_tool", "budget_exhausted"}


@dataclass
class CompletedStep:
    step: int
    text: str
    observations: list[pb.Observation]
    tokens: pb.ModelTokens | None = None  # the step's token ids, when its model reported them


@dataclass
class Checkpoint:
    """Where a lost trajectory stands: what the loop needs to go on."""

    steps: list[CompletedStep] = field(default_factory=list)
    last_seq: int = 0
    elapsed_s: float = 0.0
    resumes: int = 0
    answer: str | None = None  # the model had answered: only the `finished` event was lost

    @property
    def next_step(self) -> int:
        return self.steps[-1].step + 1 if self.steps else 1

    def tool_calls(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            for obs in step.observations:
                if obs.call_id and obs.error_kind not in _REFUSED:
                    counts[obs.name] = counts.get(obs.name, 0) + 1
        return counts


async def save_spec(client: aredis.Redis, spec: RunSpec) -> None:
    data = asdict(spec)
    data["inputs"] = [{k: v for k, v in i.items() if k != "data"} for i in data["inputs"]]  # bytes stay blobs
    data["excluded_services"] = sorted(spec.excluded_services)
    await recorder.set_field(client, spec.trajectory_id, "spec", json.dumps(data))


async def load_spec(client: aredis.Redis, trajectory_id: str) -> RunSpec | None:
    raw = await recorder.get_field(client, trajectory_id, "spec")
    if raw is None:
        return None
    data = json.loads(raw)
    data["inputs"] = [InputImage(data=b"", **i) for i in data["inputs"]]
    data["excluded_services"] = frozenset(data.get("excluded_services", ()))
    data["tools"] = tuple(data.get("tools", ()))
    data["history"] = [PriorTurn(**t) for t in data.get("history", [])]
    data["carried"] = [RegisteredImage(**i) for i in data.get("carried", [])]
    return RunSpec(**data)


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
