"""The step, one copy for every door: an action (the model's text, or a trainer's) → parsed with the
trajectory's dialect → checked → its tool round → the observations the model reads next.

Who chooses the action is the only difference between the drivers: the Run loop (engine/loop.py) asks the model
(`from_model`), the Step service (gateway/stepping) takes it from the trainer (`from_action`) or, from an MCP
client, as calls already structured (`observe` directly). Whatever the action holds, its problems come back as a
`model_output` error observation in the dialect's own tags, never as a failure of the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.engine.events import EventSink
from toolfabric_server.engine.model_call import ModelCall
from toolfabric_server.engine.ports import ChannelSplitter
from toolfabric_server.engine.prompting import observation_parts
from toolfabric_server.engine.tools import ToolRound
from toolfabric_server.engine.trajectory import Trajectory
from toolfabric_server.model.chat_template import ImagePart, Message
from toolfabric_server.model.dialects import Dialect, ParsedStep

# The error kind (and observation name) of a problem in what the model wrote.
MODEL_OUTPUT = names.error_kind_name(pb.ERROR_KIND_MODEL_OUTPUT)


def plan_outside_plan_mode(mode: str) -> str:
    return f"a <plan> is the answer of plan mode only; this trajectory is in {mode} mode"


class Step:
    def __init__(self, model_call: ModelCall, tools: ToolRound, channels: Callable[[Dialect], ChannelSplitter]) -> None:
        self._model_call, self.tools, self._channels = model_call, tools, channels

    async def from_model(self, trajectory: Trajectory, sink: EventSink, sampling: dict[str, Any]) -> ParsedStep:
        """The model writes the action (its text streams out as it comes)."""
        return self.read(trajectory, await self._model_call(trajectory, sink, sampling))

    async def from_action(self, trajectory: Trajectory, sink: EventSink, text: str) -> ParsedStep:
        """The action was written elsewhere (a trainer's rollout): recorded as the model's text, then read."""
        for channel, piece in self._channels(trajectory.dialect).feed(text):
            await sink(text=pb.TextDelta(channel=channel, text=piece))
        return self.read(trajectory, text)

    @staticmethod
    def read(trajectory: Trajectory, text: str) -> ParsedStep:
        """The action joins the conversation and is parsed with the trajectory's dialect. A `<plan>` is an answer
        in plan mode only: elsewhere it is a problem the model is told about (before, Run gave the model an empty
        turn for it and Step a problem observation; the problem is the one that tells the model what went wrong)."""
        trajectory.messages.append(Message("assistant", [text]))
        parsed = trajectory.dialect.parse(text)
        if parsed.plan is not None and not parsed.calls and trajectory.scope.mode != names.PLAN:
            parsed.problems.append(plan_outside_plan_mode(trajectory.scope.mode))
            parsed.plan = None
        return parsed

    async def observe(self, trajectory: Trajectory, sink: EventSink, parsed: ParsedStep) -> list[str | ImagePart]:
        """A parsed action's problems (one error observation) and its calls' results, as the parts the model reads
        next."""
        parts: list[str | ImagePart] = []
        if parsed.problems:
            message = "; ".join(parsed.problems)
            await sink(observation=pb.Observation(call_id="", name=MODEL_OUTPUT, text=message, is_error=True,
                                                  error_kind=MODEL_OUTPUT, kind=pb.ERROR_KIND_MODEL_OUTPUT))
            parts += observation_parts(MODEL_OUTPUT, "-", message, MODEL_OUTPUT, [], trajectory.dialect)
        if parsed.calls:
            parts += await self.tools.run(trajectory, sink, parsed.calls)
        return parts
