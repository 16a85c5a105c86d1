"""What the agent loop needs of a model, as a small interface; Triton implements it (`triton_client`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolfabric_server.model.errors import ModelUnavailable

__all__ = ["ModelBackend", "ModelChunk", "ModelUnavailable"]


@dataclass
class ModelChunk:
    """One streamed piece of a model step: new text, and on the last piece the finish data."""

    text: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # Token extensions (DESIGN.md, "Triton contract"), from engines that report them:
    prompt_token_ids: list[int] | None = None  # the ids the engine used as the prompt (first chunk)
    output_token_ids: list[int] = field(default_factory=list)  # the tokens behind this chunk's text
    output_logprobs: list[float] = field(default_factory=list)  # their logprobs, when asked for
    num_image_tokens: int | None = None  # the engine's own count of image tokens in the prompt
    token_in: bool = False  # the engine took the `input_ids` it was given instead of tokenising the text
    token_unit: str = "tokens"  # noqa: S105 - what input_tokens/output_tokens count ("words" for the baseline policy)


class ModelBackend(Protocol):
    def stream(
        self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
        input_ids: list[int] | None = None,
    ) -> AsyncIterator[ModelChunk]:
        """One model step, streamed. With `input_ids` (the prompt's ids, images expanded) an engine that takes ids
        uses them as the prompt (token-in) and says so with `token_in` on its chunks; one that cannot gets `prompt`."""
        ...
