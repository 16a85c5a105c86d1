"""What the model reads: the system prompt for a mode, the user turn, and observation turns, as messages.

The words and tags are the dialect's (model/dialects: instructions per mode, answers, observation
blocks); this module only puts them into the conversation."""

from __future__ import annotations

import functools

from toolfabric_server.common.tools import ToolSpec
from toolfabric_server.engine.images import RegisteredImage
from toolfabric_server.engine.spec import PriorTurn
from toolfabric_server.model.chat_template import ImagePart, Message
from toolfabric_server.model.dialects import Dialect


def system_message(mode: str, tools: list[ToolSpec], dialect: Dialect) -> Message:
    """The mode's instructions and the tools, declared the way the model's dialect knows them."""
    return Message("system", [_system_prompt(dialect, mode, tuple(tools))])  # type: ignore[arg-type]  # dialects are objects: hashable by identity


@functools.lru_cache(maxsize=256)
def _system_prompt(dialect: Dialect, mode: str, tools: tuple[ToolSpec, ...]) -> str:
    # The same few texts for every trajectory: rendering the schemas as JSON each time was ~2 % of the gateway's CPU.
    return dialect.system_prompt(mode, [t.function_schema() for t in tools])


def user_message(question: str, images: list[RegisteredImage],
                 earlier: list[RegisteredImage] | None = None) -> Message:
    """The turn's question with its images; images tools made in earlier turns are listed by name."""
    note = "" if not earlier else "\n\n(Images tools made in earlier turns, usable by name: " + ", ".join(
        f"{i.name} {i.width}x{i.height} {i.origin}" for i in earlier) + ")"
    return Message("user", [*(ImagePart(i.name) for i in images), question + note])


def history_messages(turns: list[PriorTurn], dialect: Dialect) -> list[Message]:
    """Earlier turns of the conversation as the model saw them end: each question, then its answer."""
    out: list[Message] = []
    for turn in turns:
        out.append(Message("user", [*(ImagePart(name) for name in turn.images), turn.question]))
        out.append(Message("assistant", [dialect.render_answer(turn.answer)]))
    return out


def observation_parts(
    tool: str, call_id: str, text: str, error_kind: str | None, images: list[RegisteredImage], dialect: Dialect,
) -> list[str | ImagePart]:
    """One observation block, as the dialect writes it; new images are named, described and attached."""
    return dialect.render_observation(tool, call_id, text, error_kind, images)
