"""An in-process `ModelBackend` that speaks the token extensions of the Triton contract, for loop tests.

It behaves like an engine with a tokenizer: with `takes_ids` it uses the `input_ids` it is given as the prompt
(token-in), otherwise it tokenises the prompt text itself, expanding each image placeholder by the image's
real size (read from its bytes, as a processor does). Its completions are scripted text; their ids are the
canonical tokenisation plus `<|im_end|>` (it stopped at the end of its turn, as an engine reports it), or,
with `spelled`, one id per character -- what a sampling model may well produce, and what re-tokenising its
text does not give back.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.tokenizer import ModelTokenizer


@dataclass
class TokenEngine:
    tokenizer: ModelTokenizer
    steps: list[str]
    takes_ids: bool = True
    spelled: bool = False
    prompts: list[list[int]] = field(default_factory=list)  # the ids each step used as its prompt
    given: list[list[int] | None] = field(default_factory=list)  # the input_ids each step was sent

    async def stream(self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
                     input_ids: list[int] | None = None) -> AsyncIterator[ModelChunk]:
        self.given.append(input_ids)
        token_in = self.takes_ids and input_ids is not None
        if token_in:
            assert input_ids is not None
            ids = list(input_ids)
        else:
            ids = self.tokenizer.encode(prompt, [Image.open(io.BytesIO(b)).size for b in images])
        self.prompts.append(ids)
        index = len(self.prompts) - 1
        text = self.steps[index] if index < len(self.steps) else "<answer>done</answer>"
        if self.spelled:
            completion = [self.tokenizer.token_id(c) or 0 for c in _byte_level(text)]
        else:
            completion = self.tokenizer.encode(text)
        completion.append(self.tokenizer.token_id("<|im_end|>") or 0)
        half = len(text) // 2
        await asyncio.sleep(0)
        yield ModelChunk(text=text[:half], prompt_token_ids=ids, output_token_ids=completion[:-1],
                         output_logprobs=[-0.5] * (len(completion) - 1), token_in=token_in)
        yield ModelChunk(text=text[half:], output_token_ids=completion[-1:], output_logprobs=[-0.25],
                         token_in=token_in)
        yield ModelChunk(finish_reason="stop", input_tokens=len(ids), output_tokens=len(completion),
                         num_image_tokens=sum(self.tokenizer.image_runs(ids)), token_in=token_in)


def _byte_level(text: str) -> list[str]:
    """The byte-level alphabet's character for each byte of `text` (GPT-2's byte-to-unicode table)."""
    table = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = table[:]
    n = 0
    for b in range(256):
        if b not in table:
            table.append(b)
            chars.append(256 + n)
            n += 1
    mapping = dict(zip(table, map(chr, chars), strict=True))
    return [mapping[b] for b in text.encode("utf-8")]
