"""R1V4's rounds: a trajectory's events written the way R1V4 streams them, one `<think>` per round.

R1V4's readers (`r1v4/parse_utils.py`) pair the i-th `<think>` with the i-th `<tool_call>` and the i-th
`<observation>`, and take a think past the last call as the final round's, before `<answer>`. The model
behind the fabric may make several calls under one think, think twice in a step, use the tag syntax, or
write a step the fabric cannot read; written as it came, such a trajectory is misread (rounds shifted,
the final think empty). So the writer puts out exactly one `<think>…</think>` per round:
- a step's thinking (all its think blocks, a blank line between) streams live as the think of the step's
  first round; each further call of the same step is a round with an empty think;
- a call is `<tool_call>{"name", "arguments"}</tool_call>` built from the fabric's parsed call (so a
  tag-syntax call reads like a JSON one), then its `<observation>` when the tool answers;
- a step the fabric could not read (the loop's `model_output` observation) is a round whose tool_call is
  `{"name": "model_output", "arguments": {}}` and whose observation is the error the model was shown;
- the final round: the last step's think, then `<answer>…</answer>` (a planner's reply: `<plan>…</plan>`);
- an executed plan (engine/plans.py) is written `<think>…</think><plan>…</plan>` and the planner's think is
  the think of the first round, the plan's first step, which the fabric runs without a model step.
Other text outside think (tool-call markup, stray words) is not written. `toolfabric export --format
rounds` takes its rounds from this same writer, so an R1V4 reader of the stream gets them round by round.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb

MODEL_OUTPUT = "model_output"  # the name of the loop's observation about a step it could not read
_BLOCKS = "\n\n"  # between two think blocks of one step
_CLOSE = "</think>"
_PLAN = re.compile(r"<plan>(.*?)</plan>", re.DOTALL)


def observation_json(observation: pb.Observation) -> str:
    """`observation_record` as JSON text. `<` and `>` are written as JSON escapes (same value), so a page or an
    error that quotes a tag cannot open a round in an R1V4 reader."""
    return json.dumps(observation_record(observation), ensure_ascii=False).replace("<", "\\u003c").replace(
        ">", "\\u003e")


def observation_record(observation: pb.Observation) -> dict[str, Any]:
    """An observation in the one shape every tool's takes as JSON (documented on `Observation` in the proto):
    `{"result": …, "images": [...], "tool": name}`, or for a failed call `{"error": kind, "message": text,
    "images": [...], "tool": name}`. `result` is the tool's JSON when its text is a JSON object or array (search
    results, pages), else its text; `images` names the images the call made (later steps use the names)."""
    images = [image.name for image in observation.images]
    if observation.is_error:
        return {"error": observation.error_kind or "error", "message": observation.text, "images": images,
                "tool": observation.name}
    return {"result": _json_or_text(observation.text), "images": images, "tool": observation.name}


def _json_or_text(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict | list) else text


@dataclass
class Round:
    """One tool-call round as R1V4's parse_utils reads it (think stripped, call and observation as JSON)."""

    think: str
    tool_call: dict[str, Any]
    observation: Any = None  # None until the tool answers (or if the trajectory ended first)
    images: list[pb.ImageRef] = field(default_factory=list)  # images the observation made

    def record(self, number: int) -> dict[str, Any]:
        return {"round_num": number, "think": self.think, "tool_call": self.tool_call,
                "observation": self.observation}


class RoundWriter:
    """Takes a trajectory's events in order; `feed` returns the R1V4 text each adds ("" for most)."""

    def __init__(self) -> None:
        self.rounds: list[Round] = []
        self.final_think = ""
        self.answer = ""
        self.plan = ""
        self._step = 0
        self._think = ""          # this step's thinking so far
        self._think_open = False  # "<think>" written for this step, "</think>" not yet
        self._gap = False         # other text came since the last think text (the next is a new block)
        self._held = ""           # the end of the thinking so far, if it may be the start of "</think>"
        self._other = ""          # this step's text outside think (where a plan is)
        self._carried: str | None = None  # a planner's think, written, for the round that runs its first step
        self._step_rounds = 0     # rounds begun in this step
        self._waiting: Round | None = None  # the round whose observation comes next
        self._queue: deque[pb.ToolCall] = deque()  # calls of this step not written yet

    def feed(self, event: pb.RunEvent) -> str:
        kind = event.WhichOneof("event")
        if kind in ("text", "tool_call", "observation", "answer") and event.step != self._step:
            out = self._end_step()
            self._step = event.step
        else:
            out = ""
        if kind == "text":
            return out + self._text(event.text)
        if kind == "tool_call":
            self._queue.append(event.tool_call)
            return out + (self._next_round() if self._waiting is None else "")
        if kind == "observation":
            return out + self._observation(event.observation)
        if kind == "answer":
            return out + self._answer(event.answer)
        if kind == "finished":
            return out + self._end_step()
        return out

    def _text(self, delta: pb.TextDelta) -> str:
        if delta.channel != pb.CHANNEL_THINK:
            self._gap, self._held = self._gap or self._think_open, ""  # what was held began the closing tag
            self._other += delta.text
            return ""
        # The model's stream may split `</think>`: its start comes as thinking until the rest arrives, so a
        # tail that could begin the tag waits for the next piece.
        text, self._held = self._held + delta.text, ""
        cut = next((n for n in range(min(len(text), len(_CLOSE) - 1), 0, -1) if _CLOSE.startswith(text[-n:])), 0)
        if cut:
            text, self._held = text[:-cut], text[-cut:]
        if not text:
            return ""
        out = ""
        if not self._think_open and self._step_rounds == 0:
            out, self._think_open, self._carried = "<think>", True, None
        elif self._gap and self._think_open:
            out = _BLOCKS
        elif not self._think_open:  # thinking after this step's calls began: it has no round of its own
            return ""
        self._gap = False
        self._think += out.removeprefix("<think>") + text
        return out + text

    def _close_think(self) -> tuple[str, str]:
        """("</think>" or "<think></think>", the think) for the step's first round or final; empty for others."""
        if self._step_rounds:
            return "<think></think>", ""
        if self._carried is not None and not self._think_open:
            think, self._carried, self.final_think = self._carried, None, ""
            return "", think
        text = "</think>" if self._think_open else "<think></think>"
        self._think_open = False
        return text, self._think.strip()

    def _begin(self, call: dict[str, Any]) -> str:
        tag, think = self._close_think()
        self._step_rounds += 1
        self._waiting = Round(think, call)
        self.rounds.append(self._waiting)
        return f"{tag}<tool_call>{json.dumps(call, ensure_ascii=False)}</tool_call>"

    def _next_round(self) -> str:
        if not self._queue:
            return ""
        call = self._queue.popleft()
        try:
            arguments = json.loads(call.arguments_json)
        except ValueError:
            arguments = call.arguments_json
        return self._begin({"name": call.name, "arguments": arguments})

    def _observation(self, observation: pb.Observation) -> str:
        out = ""
        if not observation.call_id:  # about the step itself: a round of its own
            out = self._begin({"name": MODEL_OUTPUT, "arguments": {}})
        elif self._waiting is None:
            out = self._next_round()
        body = observation_json(observation)
        if self._waiting is not None:
            self._waiting.observation, self._waiting.images = json.loads(body), list(observation.images)
            self._waiting = None
        out += f"<observation>{body}</observation>"
        return out + self._next_round()

    def _answer(self, answer: pb.FinalAnswer) -> str:
        tag, think = self._close_think()
        self.final_think, self._step_rounds = think, self._step_rounds + 1
        if answer.plan_json and answer.text == answer.plan_json:  # a planner's reply is its plan
            self.plan = answer.plan_json
            return f"{tag}<plan>{answer.plan_json}</plan>"
        self.answer = answer.text
        return f"{tag}<answer>{answer.text}</answer>"

    def _end_step(self) -> str:
        """Calls the trajectory ended before answering are rounds without an observation; a step's thinking
        that no round or answer took (a budget ended the turn) is the final think."""
        out = ""
        while self._queue:
            out += self._next_round()
            self._waiting = None
        plan = _plan(self._other) if self._step_rounds == 0 and not self.plan else None
        if plan is not None:  # a plan the loop goes on to run: its think is the first round's
            tag, think = self._close_think()
            out += f"{tag}<plan>{plan}</plan>"
            self.plan, self._carried, self.final_think = plan, think, think
        elif self._think_open and self._step_rounds == 0:
            tag, self.final_think = self._close_think()
            out += tag
        self._think, self._think_open, self._gap, self._step_rounds, self._held = "", False, False, 0, ""
        self._other = ""
        self._waiting = None
        return out

    def final(self) -> dict[str, str]:
        return {"think": self.final_think, "answer": self.answer}


def _plan(text: str) -> str | None:
    """The plan in a step's text, as JSON (None if there is none, or it is not a list)."""
    found = _PLAN.search(text)
    if found is None:
        return None
    try:
        plan = json.loads(found.group(1))
    except ValueError:
        return None
    return json.dumps(plan, ensure_ascii=False) if isinstance(plan, list) else None
