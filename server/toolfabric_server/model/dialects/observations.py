"""Observation blocks: how a tool's result is written into the prompt, and how it is read back.

Both directions live here so that what the fabric writes and what a reader of prompts (the scripted
baseline policy) parses cannot drift apart; tests/unit/test_dialects.py pins one against the other.
A block, in a dialect's `tags`:

    <observation>
    tool: <name> (call <id>)
    <text, or "error (<kind>): <text>">
    New images: <sub-image 1> (640x480, code) <image part> …   (only when the call made images)
    </observation>
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from toolfabric_server.model.chat_template import ImagePart

NEW_IMAGES = "\nNew images:"


class NamedImage(Protocol):
    """An image a tool made, as the model is told about it (gateway.images.RegisteredImage is one)."""

    @property
    def name(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def origin(self) -> str: ...


def render(tags: tuple[str, str], tool: str, call_id: str, text: str, error_kind: str | None,
           images: Sequence[NamedImage]) -> list[str | ImagePart]:
    """One observation block; new images are named, described and attached."""
    body = f"error ({error_kind}): {text}" if error_kind else text
    parts: list[str | ImagePart] = [f"{tags[0]}\ntool: {tool} (call {call_id})\n{body}"]
    if images:
        parts.append(NEW_IMAGES)
        for image in images:
            parts.append(f" {image.name} ({image.width}x{image.height}, {image.origin}) ")
            parts.append(ImagePart(image.name))
    parts.append(f"\n{tags[1]}\n")
    return parts


@dataclass
class ObservationBlock:
    """A block read back: the tool, its call id, and everything between the header and the closing tag."""

    tool: str
    call_id: str
    text: str

    @property
    def is_error(self) -> bool:
        return self.text.startswith("error (")

    @property
    def body(self) -> str:
        """The tool's text without the new-images listing."""
        return self.text.split(NEW_IMAGES, 1)[0]

    def image_listing(self) -> str:
        return self.text.partition(NEW_IMAGES)[2]


@cache
def _block(tags: tuple[str, str]) -> re.Pattern[str]:
    opening, closing = map(re.escape, tags)
    return re.compile(rf"{opening}\ntool: (\S+) \(call (\S+)\)\n(.*?)\n{closing}", re.DOTALL)


def read(tags: tuple[str, str], text: str) -> list[ObservationBlock]:
    """The blocks in a rendered prompt's text (image parts rendered however the template draws them)."""
    return [ObservationBlock(m.group(1), m.group(2), m.group(3)) for m in _block(tags).finditer(text)]
