"""What a model family speaks: its chat template, its output syntax and its stop strings.

A `Dialect` is everything model-specific the agent loop needs: how to render the conversation
(`template`), how to read one model step back (`parse`, which never raises: what it cannot
understand goes into `ParsedStep.problems`), which strings end a step (`stop`, sent to vLLM so the
model never writes the fabric's observations itself), how observations are wrapped for the model to
read, and how the tools are declared to it. A new model family is one module in this package,
registered in `registry.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from toolfabric_server.model.chat_template import ChatTemplate, ImagePart
from toolfabric_server.model.dialects import instructions as _instructions
from toolfabric_server.model.dialects import observations as _observations
from toolfabric_server.model.dialects.observations import NamedImage, ObservationBlock


@dataclass
class RawCall:
    """A tool call as the model wrote it, named and shaped for the fabric's catalog."""

    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedStep:
    think: str = ""
    calls: list[RawCall] = field(default_factory=list)
    answer: str | None = None
    plan: list[dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)


class Answer(NamedTuple):
    text: str  # stripped
    closed: bool  # False: the tag runs to the end of the text (a step cut short, a stream still going)


class Dialect(Protocol):
    name: str
    template: ChatTemplate
    stop: tuple[str, ...]
    # The tags an observation is wrapped in, e.g. ("<observation>", "</observation>").
    observation_tags: tuple[str, str]
    # The names of the tags the model thinks and answers in (the streamed text's channels).
    think_tag: str
    answer_tag: str

    def parse(self, text: str) -> ParsedStep: ...

    def answer_in(self, text: str) -> Answer | None:
        """The model's answer in `text` (a step, a whole trajectory sent back, a stored answer), if it has one."""
        ...

    def has_markup(self, text: str) -> bool:
        """Whether `text` holds any of the tags the model writes a step in (so it is not a bare answer)."""
        ...

    def system_prompt(self, mode: str, schemas: list[dict[str, Any]]) -> str:
        """The system turn: the mode, its instructions in this dialect's tags, and the tools as it knows them."""
        ...

    def render_answer(self, answer: str) -> str:
        """An earlier turn's answer as the model would have written it."""
        ...

    def render_observation(self, tool: str, call_id: str, text: str, error_kind: str | None,
                           images: Sequence[NamedImage]) -> list[str | ImagePart]:
        """One observation block in this dialect's tags (model/dialects/observations.py)."""
        ...

    def read_observations(self, text: str) -> list[ObservationBlock]:
        """The observation blocks `render_observation` wrote into `text`."""
        ...

    def declare_tools(self, schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The function schemas the system prompt lists, given the catalog's (the model's own names and units)."""
        ...


THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
CALL_OR_ANSWER_HINT = (
    "the step has neither a tool call nor an answer: call a tool with "
    '<tool_call>{"name": …, "arguments": {…}}</tool_call> or finish with <answer>…</answer>'
)


def last_answer(text: str, tag: str = "answer") -> Answer | None:
    """The text after the last <answer>, up to its </answer> or, unclosed, to the end.

    The one reading of an answer (the parser, the chat door's history and the evals' scoring all ask it):
    the last, because a trajectory sent back whole may quote "<answer>" in an observation or think
    before its final answer; to the end when unclosed, because readers of stored or streamed text take
    what is there (the parser, which must not finish a run on a cut-off answer, requires `closed`).
    Tags are case-sensitive: they are the model's tokens, "<ANSWER>" is not one.
    """
    opening = f"<{tag}>"
    start = text.rfind(opening)
    if start < 0:
        return None
    body = text[start + len(opening):]
    end = body.find(f"</{tag}>")
    return Answer(body[:end].strip(), True) if end >= 0 else Answer(body.strip(), False)


def split_think(text: str, step: ParsedStep) -> str:
    """Fills `step.think` and returns the body after it: calls and answers inside <think> are musing, not acting."""
    think = THINK.search(text)
    if think:
        step.think = think.group(1).strip()
    return text[think.end():] if think else text


# Valid JSON that Python's reader still refuses (found by fuzzing; degenerate output such as
# "[[[[…" is a common way for a model to fail): nesting past the recursion limit, and integers
# longer than int's 4300-digit conversion limit (ValueError).
UNREADABLE = (RecursionError, ValueError)


NOT_READ = object()  # read_json's "nothing could be read" (JSON's own null is a value)


def read_json(raw: str, what: str, problems: list[str], *, quote: bool = False) -> Any:
    """`raw` as JSON, or NOT_READ with the problem noted in the model's terms (`what`: "the plan", …)."""
    excerpt = f": {raw.strip()[:200]}" if quote else ""
    try:
        return json.loads(raw.strip())
    except json.JSONDecodeError as exc:
        problems.append(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}){excerpt}")
    except UNREADABLE as exc:
        kind = "nested too deeply" if isinstance(exc, RecursionError) else "a number too long to read"
        problems.append(f"{what} cannot be read as JSON ({kind}){excerpt}")
    return NOT_READ


def parse_json_call(raw: str, index: int, problems: list[str]) -> RawCall | None:
    """`{"name": …, "arguments": {…}}` (arguments may be double-encoded), or None with the problem noted."""
    obj = read_json(raw, f"tool call {index}", problems, quote=True)
    if obj is NOT_READ:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        problems.append(f'tool call {index} must be an object with a string "name" and an "arguments" object')
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except (json.JSONDecodeError, *UNREADABLE):
            pass
    if not isinstance(args, dict):
        problems.append(f'tool call {index} ({obj["name"]}): "arguments" must be a JSON object')
        return None
    return RawCall(obj["name"], args)


def report_unclosed(body: str, tags: tuple[str, ...], problems: list[str]) -> None:
    for tag in tags:
        if body.count(f"<{tag}>") > body.count(f"</{tag}>"):
            problems.append(f"<{tag}> was opened but never closed with </{tag}>")


def finish(step: ParsedStep) -> ParsedStep:
    """The rules every dialect shares: a step that calls tools does not also answer; an empty step is a problem."""
    if step.answer is not None and step.calls:
        step.problems.append("the step both calls tools and answers; the tool calls were run and the answer ignored")
        step.answer = None
    if not step.calls and step.answer is None and step.plan is None and not step.problems:
        step.problems.append(CALL_OR_ANSWER_HINT)
    return step


class TaggedDialect:
    """What the two families share: <think>/<answer> channels, the one answer reading, markup detection.

    A dialect sets `step_tags` (every tag its steps are written in) and inherits the rest."""

    think_tag = "think"
    answer_tag = "answer"
    step_tags: tuple[str, ...] = ("think", "tool_call", "answer")

    def answer_in(self, text: str) -> Answer | None:
        return last_answer(text, self.answer_tag)

    def has_markup(self, text: str) -> bool:
        return any(f"<{tag}>" in text or f"</{tag}>" in text for tag in self.step_tags)

    def system_prompt(self, mode: str, schemas: list[dict[str, Any]]) -> str:
        listing = "\n".join(json.dumps(s, ensure_ascii=False) for s in self.declare_tools(schemas))
        text = _instructions.instructions(mode, think=self.think_tag, answer=self.answer_tag,
                                          observation=self.observation_tags)
        return _instructions.system_text(mode, text, listing)

    def render_answer(self, answer: str) -> str:
        return f"<{self.answer_tag}>{answer}</{self.answer_tag}>"

    def render_observation(self, tool: str, call_id: str, text: str, error_kind: str | None,
                           images: Sequence[NamedImage]) -> list[str | ImagePart]:
        return _observations.render(self.observation_tags, tool, call_id, text, error_kind, images)

    def read_observations(self, text: str) -> list[ObservationBlock]:
        return _observations.read(self.observation_tags, text)

    # Set by each dialect (the Protocol's attributes); declared here for the methods above.
    observation_tags: tuple[str, str]

    def declare_tools(self, schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return schemas
