"""One trajectory's token ids, kept so every prompt extends the previous one exactly (strict token-in).

RL trainers need the ids the model saw and produced. Re-tokenising a re-rendered conversation drifts: a
separator after `<|im_end|>` merges differently, the model's own tokens are not what the tokenizer makes
of their text, image placeholder counts change. So the ledger keeps the previous prompt's ids and the
completion's ids as the engine produced them, and tokenises only the text the fabric appends (the end of
the assistant turn, the observation turn, the opening of the next assistant turn) with the model's own
tokenizer, image placeholders expanded. Step k+1's prompt ids begin with step k's prompt + completion ids
by construction.

Each step is recorded as a `ModelTokens` event: the prompt as "reuse this many ids of the previous prompt +
completion, then these", so the record stays linear in the trajectory's length, and a prompt that does not
extend the previous one (an engine that tokenised text itself) shows where it stopped doing so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.tokenizer import ModelTokenizer

log = logging.getLogger(__name__)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class StepTokens:
    """What one model step's chunks said about tokens, gathered as they stream."""

    prompt_ids: list[int] | None = None
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    engine_image_tokens: int = 0
    token_in: bool = False

    def add(self, chunk: ModelChunk) -> None:
        if chunk.prompt_token_ids is not None and self.prompt_ids is None:
            self.prompt_ids = chunk.prompt_token_ids  # the first response's: the prompt the engine used
        self.completion_ids += chunk.output_token_ids
        self.logprobs += chunk.output_logprobs
        if chunk.num_image_tokens is not None:
            self.engine_image_tokens = chunk.num_image_tokens
        self.token_in = self.token_in or chunk.token_in


class TokenLedger:
    """The token ids of one trajectory so far; `tokenizer` None = record what the engine reports, build nothing."""

    def __init__(self, tokenizer: ModelTokenizer | None, turn_end: str = "<|im_end|>") -> None:
        self.tokenizer, self._turn_end = tokenizer, turn_end
        self._turn_end_id = tokenizer.token_id(turn_end) if tokenizer else None
        self.prompt_ids: list[int] = []
        self.completion_ids: list[int] = []
        self._text = ""  # the prompt text + completion text those ids stand for
        self._images = 0  # images in that text

    def prompt_for(self, text: str, image_sizes: Sequence[tuple[int, int]]) -> list[int] | None:
        """The ids of the rendered prompt `text` (its images' (width, height) in order), or None without a tokenizer.

        When `text` continues the text of the previous prompt + completion, only the continuation is tokenised
        and appended to their ids; otherwise (the first step, a step after one without ids) all of it."""
        if self.tokenizer is None:
            return None
        try:
            if not self._text or not text.startswith(self._text) or not self.prompt_ids:
                return self.tokenizer.encode(text, image_sizes)
            tail = text[len(self._text):]
            # An engine that stopped on the end-of-turn token generated it (its id ends the completion); the
            # template writes it too. It is the model's token, so the appended text starts after it.
            if self.completion_ids and self.completion_ids[-1] == self._turn_end_id and tail.startswith(self._turn_end):
                tail = tail[len(self._turn_end):]
            return [*self.prompt_ids, *self.completion_ids, *self.tokenizer.encode(tail, image_sizes[self._images:])]
        except ValueError as exc:  # placeholders and images disagree, an image too narrow: the engine gets text
            log.warning("token ids not built (%s); the model gets the prompt as text", exc)
            return None

    def record(self, prompt_text: str, completion_text: str, image_sizes: Sequence[tuple[int, int]],
               sent: list[int] | None, step: StepTokens) -> pb.ModelTokens | None:
        """The step's `ModelTokens`, and the ledger moved on to it; None when nobody knows the step's ids."""
        prompt = step.prompt_ids if step.prompt_ids is not None else (sent if step.token_in else None)
        if prompt is None and step.completion_ids:
            prompt = self._engine_reading(prompt_text, completion_text, image_sizes, step.completion_ids)
        image_count = len(image_sizes)
        if prompt is None:
            self.prompt_ids, self.completion_ids, self._text = [], [], ""  # the next step starts over from text
            return None
        previous = [*self.prompt_ids, *self.completion_ids]
        reused = common_prefix(previous, prompt)
        if self.prompt_ids and reused < len(previous):
            log.info("prompt ids stop extending the previous step's at token %d of %d", reused, len(previous))
        runs = self.tokenizer.image_runs(prompt) if self.tokenizer else []
        out = pb.ModelTokens(prompt_reused=reused, prompt_token_ids=prompt[reused:],
                             completion_token_ids=step.completion_ids, completion_logprobs=step.logprobs,
                             image_tokens=runs, token_in=step.token_in,
                             engine_image_tokens=step.engine_image_tokens)
        self._advance(prompt, step.completion_ids, prompt_text, completion_text, image_count)
        return out

    def _engine_reading(self, prompt_text: str, completion_text: str, image_sizes: Sequence[tuple[int, int]],
                        completion: list[int]) -> list[int] | None:
        """The prompt ids of an engine that took text and reported only its completion's ids (Triton's official vLLM
        backend): it tokenised the text with this checkpoint's tokenizer, which reads it the same way here. Kept only
        when the completion ids spell the text it streamed (not some other reading of it)."""
        if self.tokenizer is None or not self.tokenizer.decode(completion, skip_special=True).startswith(
                completion_text):
            return None
        try:
            return self.tokenizer.encode(prompt_text, image_sizes)
        except ValueError:
            return None

    def restore(self, prompt_text: str, completion_text: str, image_count: int, tokens: pb.ModelTokens) -> None:
        """Moves the ledger over a step recorded before (a trajectory resumed on another gateway)."""
        prompt = [*self.prompt_ids, *self.completion_ids][:tokens.prompt_reused] + list(tokens.prompt_token_ids)
        self._advance(prompt, list(tokens.completion_token_ids), prompt_text, completion_text, image_count)

    def _advance(self, prompt: list[int], completion: list[int], prompt_text: str, completion_text: str,
                 image_count: int) -> None:
        self.prompt_ids, self.completion_ids = list(prompt), list(completion)
        # Without the completion's ids the next prompt cannot extend these: it is tokenised whole.
        self._text = prompt_text + completion_text if completion or not completion_text else ""
        self._images = image_count
