"""A recorded trajectory as the conversation the model saw: system (tool list), user (question and
images), then per step the assistant's text and a user turn of <observation> blocks.

Built with the agent loop's own prompt pieces, so re-rendering it with the model's chat template
gives the prompts the model received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import DEFAULT_MODE, MODE_NAMES, PLAN
from toolfabric_server.common.tools import Catalog
from toolfabric_server.engine import plans
from toolfabric_server.engine.images import RegisteredImage
from toolfabric_server.engine.prompting import observation_parts, system_message, user_message
from toolfabric_server.model.chat_template import ImagePart, Message
from toolfabric_server.model.dialects import Dialect, dialect_for
from toolfabric_server.model.settings import ModelSettings


@dataclass
class Call:
    call_id: str
    name: str
    arguments: Any  # parsed JSON (or the raw string if it was not JSON)
    arguments_json: str


@dataclass
class Step:
    number: int
    text: str = ""    # the assistant's whole output for the step (all channels, in order)
    think: str = ""
    answer: str = ""
    calls: list[Call] = field(default_factory=list)
    observations: list[pb.Observation] = field(default_factory=list)
    by_fabric: bool = False  # a plan step the fabric ran without a model step (engine/plans.py)


@dataclass
class Conversation:
    trajectory: pb.Trajectory
    mode: str
    messages: list[Message]
    steps: list[Step]
    images: list[RegisteredImage]  # every image by name, inputs first
    dialect: Dialect  # the trajectory's model's: its system prompt, observation tags and chat template
    catalog: Catalog  # every tool the deployment offers (the export's, built once at its start)

    @property
    def answer(self) -> str:
        return self.trajectory.answer


def steps_of(trajectory: pb.Trajectory) -> list[Step]:
    steps: dict[int, Step] = {}
    for event in trajectory.events:
        kind = event.WhichOneof("event")
        if kind not in ("text", "tool_call", "observation") or event.step < 1:
            continue
        step = steps.setdefault(event.step, Step(event.step))
        if kind == "text":
            step.text += event.text.text
            if event.text.channel == pb.CHANNEL_THINK:
                step.think += event.text.text
            elif event.text.channel == pb.CHANNEL_ANSWER:
                step.answer += event.text.text
        elif kind == "tool_call":
            try:
                arguments = json.loads(event.tool_call.arguments_json)
            except json.JSONDecodeError:
                arguments = event.tool_call.arguments_json
            step.calls.append(Call(event.tool_call.call_id, event.tool_call.name, arguments,
                                   event.tool_call.arguments_json))
        else:
            step.observations.append(event.observation)
    return [steps[n] for n in sorted(steps)]


def rebuild(trajectory: pb.Trajectory, model_settings: ModelSettings, catalog: Catalog) -> Conversation:
    """The conversation the model saw, rebuilt from the record (in the dialect `model_settings` give its model,
    offering the tools of `catalog` the run offered)."""
    mode = MODE_NAMES.get(trajectory.mode, DEFAULT_MODE)
    started = next((e.started for e in trajectory.events if e.WhichOneof("event") == "started"), pb.TrajectoryStarted())
    inputs = [RegisteredImage.from_ref(r) for r in started.images]
    images = list(inputs)
    dialect = dialect_for(trajectory.model, model_settings.dialects, model_settings.default_dialect)
    # The tools the run offered: the mode's, or the request's narrower set (recorded in `started`).
    offered = [t for t in catalog.visible(mode) if not started.tools or t.name in started.tools]
    messages = [system_message(mode, offered, dialect), user_message(trajectory.question, inputs)]
    steps = steps_of(trajectory)
    plan: list[dict[str, Any]] | None = None  # an executed plan: its steps' messages are the loop's (engine/plans.py)
    plan_at = 0
    for step in steps:
        parts: list[str | ImagePart] = []
        for obs in step.observations:
            new = [RegisteredImage.from_ref(r) for r in obs.images]
            images += new
            error = (obs.error_kind or "error") if obs.is_error else None
            parts += observation_parts(obs.name, obs.call_id or "-", obs.text, error, new, dialect)
        number = step.number - plan_at
        item = plan[number - 1] if plan is not None and 1 <= number <= len(plan) else None
        if item is not None and plan is not None:
            if not step.text:  # the fabric ran it as the plan wrote it
                step.by_fabric = True
                plans.add(messages, parts)
                continue
            instruction = plans.answer_instruction if item["tool_name"] == "none" else plans.fill_instruction
            plans.tell(messages, instruction(number, len(plan), item, dialect))
        messages.append(Message("assistant", [step.text]))
        if plan is None and mode == PLAN and not step.calls and not step.observations:
            plan, plan_at = dialect.parse(step.text).plan, step.number
        if parts:
            messages.append(Message("user", parts))
    return Conversation(trajectory, mode, messages, steps, images, dialect, catalog)
