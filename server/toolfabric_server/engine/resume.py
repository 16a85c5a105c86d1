"""Resuming a trajectory whose gateway was lost, from its record.

At start the gateway stores the validated request (engine/spec.py `to_json`) beside the record. The record
holds every event; a step is complete when its model text and an observation for each of its calls are recorded. A
resumed trajectory keeps the complete steps as they are (their tool results are not run again), rebuilds the
conversation, image registry and tool-call budget from them, and runs again from the first incomplete step
with what is left of its deadline. Token counts of the lost gateway's steps are not recorded until the end,
so a resumed trajectory's usage counts tokens from the resume on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.engine.prompting import observation_parts
from toolfabric_server.engine.trajectory import Trajectory
from toolfabric_server.model.chat_template import ImagePart, Message

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


def restore(trajectory: Trajectory, point: Checkpoint, opening: list[Message]) -> None:
    """The conversation, images and budget of the checkpoint's completed steps, as they were recorded, after the
    run's `opening` messages."""
    trajectory.messages = opening
    for done in point.steps:
        if done.tokens is not None:
            trajectory.tokens.restore(trajectory.dialect.template.render(trajectory.messages), done.text,
                                      trajectory.image_count(), done.tokens)
        trajectory.messages.append(Message("assistant", [done.text]))
        parts: list[str | ImagePart] = []
        for obs in done.observations:
            images = [trajectory.registry.add_output(i.blob, i.width, i.height, i.origin, i.mime_type, i.step)
                      for i in obs.images]
            parts += observation_parts(obs.name, obs.call_id or "-", obs.text,
                                       (obs.error_kind or "error") if obs.is_error else None, images,
                                       trajectory.dialect)
        trajectory.messages.append(Message("user", parts))
    trajectory.usage.tool_calls = point.tool_calls()
    trajectory.tool_calls = sum(trajectory.usage.tool_calls.values())
    trajectory.usage.steps = len(point.steps)
