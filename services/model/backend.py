"""What the agent loop needs of a model, as a small interface; Triton implements it (`triton_client`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from services.model.errors import ModelUnavailable

__all__ = ["ModelBackend", "ModelChunk", "ModelUnavailable"]


@dataclass
class ModelChunk:
    """One streamed piece of a model step: new text, and on the last piece the finish data."""

    text: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class ModelBackend(Protocol):
    def stream(
        self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str
    ) -> AsyncIterator[ModelChunk]: ...
