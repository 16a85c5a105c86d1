"""What the model reads: the system prompt for a mode, the user turn, and observation turns."""

from __future__ import annotations

import json

from engine.images import RegisteredImage
from engine.spec import PriorTurn
from services.common.tools import ToolSpec
from services.model.chat_template import ImagePart, Message
from services.model.dialects import Dialect

_INSTRUCTIONS = {
    "deep_research": (
        "You are a multimodal deep-research agent. Think inside <think>…</think>, then either call one or "
        "more tools, each as <tool_call>{\"name\": …, \"arguments\": {…}}</tool_call> (several calls in one "
        "step run in parallel), or give the final answer as <answer>…</answer>. Tool results come back as "
        "<observation>…</observation>. Refer to images by name: <image 1> for the user's first image, "
        "<sub-image N> for images tools produced."
    ),
    "general": (
        "You think with images. Think inside <think>…</think>; call tools as "
        "<tool_call>{\"name\": …, \"arguments\": {…}}</tool_call> to crop, zoom, enhance or analyse images, "
        "and finish with <answer>…</answer>."
    ),
    "plan": (
        "You are a search planner. Reply with <plan>[…]</plan>: a JSON list of 2 to 10 steps, each "
        '{"description": …, "tool_name": one of image_search, text_search, web_visit, none, '
        '"parameters": {"image_path" | "query" | "url": …}}. Later steps may refer to earlier results with '
        'placeholders such as "[Person from Step 1]". The last step is a verification with tool_name "none".'
    ),
}


def system_message(mode: str, tools: list[ToolSpec], dialect: Dialect) -> Message:
    """The mode's instructions and the tools, declared the way the model's dialect knows them."""
    schemas = dialect.declare_tools([t.function_schema() for t in tools])
    listing = "\n".join(json.dumps(s, ensure_ascii=False) for s in schemas)
    opening, closing = dialect.observation_tags
    instructions = _INSTRUCTIONS[mode].replace("<observation>…</observation>", f"{opening}…{closing}")
    return Message("system", [f"Mode: {mode}\n{instructions}\n\n# Tools\n<tools>\n{listing}\n</tools>"])


def user_message(question: str, images: list[RegisteredImage],
                 earlier: list[RegisteredImage] | None = None) -> Message:
    """The turn's question with its images; images tools made in earlier turns are listed by name."""
    note = "" if not earlier else "\n\n(Images tools made in earlier turns, usable by name: " + ", ".join(
        f"{i.name} {i.width}x{i.height} {i.origin}" for i in earlier) + ")"
    return Message("user", [*(ImagePart(i.name) for i in images), question + note])


def history_messages(turns: list[PriorTurn]) -> list[Message]:
    """Earlier turns of the conversation as the model saw them end: each question, then its answer."""
    out: list[Message] = []
    for turn in turns:
        out.append(Message("user", [*(ImagePart(name) for name in turn.images), turn.question]))
        out.append(Message("assistant", [f"<answer>{turn.answer}</answer>"]))
    return out


def observation_parts(
    tool: str, call_id: str, text: str, error_kind: str | None, images: list[RegisteredImage],
    tags: tuple[str, str] = ("<observation>", "</observation>"),
) -> list[str | ImagePart]:
    """One observation block (in the dialect's `tags`); new images are named, described and attached."""
    body = f"error ({error_kind}): {text}" if error_kind else text
    parts: list[str | ImagePart] = [f"{tags[0]}\ntool: {tool} (call {call_id})\n{body}"]
    if images:
        parts.append("\nNew images:")
        for image in images:
            parts.append(f" {image.name} ({image.width}x{image.height}, {image.origin}) ")
            parts.append(ImagePart(image.name))
    parts.append(f"\n{tags[1]}\n")
    return parts
