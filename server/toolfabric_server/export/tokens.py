"""Token-exact RL samples from a trajectory's recorded `ModelTokens` events (rl_tokens.jsonl).

A multi-turn trajectory is one sequence when every step's prompt ids extend the previous step's prompt +
completion ids (the prefix property; the gateway's token-in builds prompts so). The sample is then those
ids, a loss mask of 1 on exactly the model's own tokens (every step's completion ids) and 0 on everything
the fabric wrote (system prompt, question, observations, turn markup, image placeholders), the spans of
both, the sampled tokens' logprobs where the engine gave them, and each image's placeholder count.
Where a prompt stops extending the previous one (an engine that tokenised re-rendered text), the sample
is cut there: the steps before and from that step on become separate samples (`segment` 0, 1, …), and the
first mismatch (step, position, the id expected and the id found) is reported, never papered over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.export.conversation import Conversation
from toolfabric_server.model.chat_template import ImagePart


@dataclass
class Mismatch:
    step: int
    position: int      # the first prompt position that differs from the previous prompt + completion
    expected: int | None  # the previous prompt + completion's id there (None: the prompt is shorter)
    found: int | None     # this prompt's id there (None: the prompt ends there)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "position": self.position, "expected": self.expected, "found": self.found}


@dataclass
class Segment:
    steps: list[int] = field(default_factory=list)
    input_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    completion_spans: list[list[int]] = field(default_factory=list)   # [start, end, step]
    observation_spans: list[list[int]] = field(default_factory=list)  # [start, end]: what the fabric appended
    logprobs: list[list[float]] = field(default_factory=list)         # per step, aligned with its completion
    image_tokens: list[int] = field(default_factory=list)
    token_in: bool = True
    engine_image_tokens: int = 0


def token_steps(trajectory: pb.Trajectory) -> list[tuple[int, pb.ModelTokens]]:
    """The recorded token events, by step (a step run again after a resume keeps its last record)."""
    by_step = {e.step: e.tokens for e in trajectory.events if e.HasField("tokens")}
    return sorted(by_step.items())


def segments(trajectory: pb.Trajectory) -> tuple[list[Segment], Mismatch | None]:
    """The trajectory's prefix-consistent runs of steps, and the first place the prefix property broke."""
    out: list[Segment] = []
    first: Mismatch | None = None
    previous: list[int] = []  # the previous step's prompt + completion ids
    for step, tokens in token_steps(trajectory):
        prompt = previous[:tokens.prompt_reused] + list(tokens.prompt_token_ids)
        if out and tokens.prompt_reused < len(previous):
            if first is None:
                at = tokens.prompt_reused
                first = Mismatch(step, at, previous[at], prompt[at] if at < len(prompt) else None)
            out.append(Segment())
        if not out:
            out.append(Segment())
        seg = out[-1]
        if seg.input_ids:
            seg.observation_spans.append([len(seg.input_ids), len(prompt)])
        seg.input_ids += prompt[len(seg.input_ids):]
        seg.loss_mask += [0] * (len(seg.input_ids) - len(seg.loss_mask))
        start = len(seg.input_ids)
        seg.input_ids += tokens.completion_token_ids
        seg.loss_mask += [1] * len(tokens.completion_token_ids)
        seg.completion_spans.append([start, len(seg.input_ids), step])
        seg.logprobs.append([round(v, 6) for v in tokens.completion_logprobs])
        seg.steps.append(step)
        seg.image_tokens = list(tokens.image_tokens)
        seg.token_in = seg.token_in and tokens.token_in
        seg.engine_image_tokens = tokens.engine_image_tokens
        previous = prompt + list(tokens.completion_token_ids)
    return out, first


def rl_token_records(conv: Conversation, image_path: dict[str, str]) -> list[dict[str, Any]]:
    """One record per segment (one per trajectory when the prefix property holds throughout); [] without tokens."""
    found, mismatch = segments(conv.trajectory)
    assistant_turns = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    model_steps = [s for s in conv.steps if not s.by_fabric]  # a plan step the fabric ran has no assistant turn
    by_step = {step.number: index for step, index in zip(model_steps, assistant_turns, strict=False)}
    out = []
    for number, seg in enumerate(found):
        last = by_step.get(seg.steps[-1], len(conv.messages))
        names = [p.name for m in conv.messages[:last] for p in m.parts if isinstance(p, ImagePart)]
        out.append({
            "trajectory_id": conv.trajectory.trajectory_id, "segment": number, "steps": seg.steps,
            "input_ids": seg.input_ids, "loss_mask": seg.loss_mask, "completion_spans": seg.completion_spans,
            "observation_spans": seg.observation_spans, "logprobs": seg.logprobs,
            "images": [image_path[n] for n in names if n in image_path], "image_tokens": seg.image_tokens,
            "token_in": seg.token_in, "model": conv.trajectory.model,
            "prefix_property": mismatch is None,
            "first_mismatch": mismatch.to_json() if mismatch is not None else None,
        })
    return out
