"""Chat templates: turning a conversation into the prompt string a model expects, and back.

The vLLM backend on Triton takes a finished prompt (the chat template is the fabric's job), with
one image placeholder per image sent in the `image` tensor, in the same order. Which template a
model gets is its dialect's choice (`toolfabric_server.model.dialects`). Qwen3-VL (the base
of the R1V4 family) uses `<|im_start|>role … <|im_end|>` turns and
`<|vision_start|><|image_pad|><|vision_end|>` per image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ImagePart:
    """An image in a message; `name` is the trajectory's name for it (`<image 1>`)."""

    name: str


@dataclass
class Message:
    role: Role
    parts: list[str | ImagePart] = field(default_factory=list)

    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    def image_names(self) -> list[str]:
        return [p.name for p in self.parts if isinstance(p, ImagePart)]


class ChatTemplate(Protocol):
    name: str
    turn_end: str  # the token that closes a turn (the model generates it to end its own)

    def render(self, messages: list[Message]) -> str: ...

    def parse(self, prompt: str) -> list[Message]: ...


class Qwen3VLTemplate:
    """Qwen3-VL's template; the open prompt ends with the assistant turn the model continues."""

    name = "qwen3-vl"
    turn_end = "<|im_end|>"
    IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
    _TURN = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)(?:<\|im_end\|>\n?|$)", re.DOTALL)

    def render(self, messages: list[Message]) -> str:
        out = []
        for msg in messages:
            body = "".join(self.IMAGE if isinstance(p, ImagePart) else p for p in msg.parts)
            out.append(f"<|im_start|>{msg.role}\n{body}<|im_end|>\n")
        out.append("<|im_start|>assistant\n")
        return "".join(out)

    def parse(self, prompt: str) -> list[Message]:
        """Inverse of render (image names become positional: `<image k>` for the k-th placeholder)."""
        messages: list[Message] = []
        counter = 0
        for match in self._TURN.finditer(prompt):
            role, body = match.group(1), match.group(2)
            parts: list[str | ImagePart] = []
            for i, chunk in enumerate(body.split(self.IMAGE)):
                if i > 0:
                    counter += 1
                    parts.append(ImagePart(f"#{counter}"))
                if chunk:
                    parts.append(chunk)
            messages.append(Message(role, parts))  # type: ignore[arg-type]
        # The trailing open assistant turn is the one being generated, not history.
        if messages and messages[-1].role == "assistant" and not messages[-1].parts:
            messages.pop()
        return messages


class Qwen25VLTemplate(Qwen3VLTemplate):
    """Qwen2.5-VL's template: the same turns and image placeholders, and its default system turn when none is given."""

    name = "qwen2.5-vl"
    DEFAULT_SYSTEM = "You are a helpful assistant."

    def render(self, messages: list[Message]) -> str:
        if not messages or messages[0].role != "system":
            messages = [Message("system", [self.DEFAULT_SYSTEM]), *messages]
        return super().render(messages)
