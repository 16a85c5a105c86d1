"""What the system prompt tells the model per mode, written in a dialect's tags.

The words are the fabric's; the tags are filled in from the dialect (so DeepEyes reads that tool
results come back in <tool_response>, never a tag it does not get). `read_mode` reads the mode
back out of a system prompt (the scripted baseline policy plays the model from the prompt alone).
"""

from __future__ import annotations

import re

from toolfabric.v1.names import DEEP_RESEARCH, GENERAL, PLAN, ModeName

_TEXT: dict[ModeName, str] = {
    DEEP_RESEARCH: (
        "You are a multimodal deep-research agent. Think inside {think}, then either call one or "
        "more tools, each as {call} (several calls in one "
        "step run in parallel), or give the final answer as {answer}. Tool results come back as "
        "{observation}. Refer to images by name: <image 1> for the user's first image, "
        "<sub-image N> for images tools produced."
    ),
    GENERAL: (
        "You think with images. Think inside {think}; call tools as "
        "{call} to crop, zoom, enhance or analyse images, "
        "and finish with {answer}."
    ),
    PLAN: (
        "You are a search planner. Reply with {plan}: a JSON list of 2 to 10 steps, each "
        '{{"description": …, "tool_name": one of image_search, text_search, web_visit, none, '
        '"parameters": {{"image_path" | "query" | "url": …}}}}. Later steps may refer to earlier results with '
        'placeholders such as "[Person from Step 1]". The last step is a verification with tool_name "none".'
    ),
}
_MODE_LINE = re.compile(r"^Mode: (\w+)", re.MULTILINE)


def instructions(mode: str, *, think: str, answer: str, observation: tuple[str, str]) -> str:
    """The mode's instructions with the dialect's tags (KeyError for a mode that is not one)."""
    return _TEXT[mode].format(  # type: ignore[index]
        think=f"<{think}>…</{think}>", answer=f"<{answer}>…</{answer}>",
        call='<tool_call>{"name": …, "arguments": {…}}</tool_call>', plan="<plan>[…]</plan>",
        observation=f"{observation[0]}…{observation[1]}")


def system_text(mode: str, instructions_text: str, tool_listing: str) -> str:
    return f"Mode: {mode}\n{instructions_text}\n\n# Tools\n<tools>\n{tool_listing}\n</tools>"


def read_mode(system: str) -> str | None:
    """The mode a system prompt was written for, or None if it names none."""
    found = _MODE_LINE.search(system)
    return found.group(1) if found else None
