"""Tiny Qwen-VL models with random weights for the token conformance test, and an in-process engine on them.

`checkpoint(family, dir)` writes a checkpoint directory (tokenizer.json, preprocessor_config.json) and returns
the transformers model built from a small config; `TransformersEngine` is a `ModelBackend` that generates
with it in this process -- the model's real vision tower and its real image processor (the PIL one: no
torchvision here) -- and reports the token extensions of the Triton contract, taking `input_ids` (token-in).
Needs torch and transformers (the model venv, `make test-model`).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from services.model.backend import ModelChunk
from services.model.tokenizer import ModelTokenizer
from tests.support.tokenizer import make_checkpoint

# Qwen3-VL cuts 16 px patches, Qwen2.5-VL (DeepEyes) 14 px; both merge 2 x 2.
PATCH = {"qwen3vl": 16, "deepeyes": 14}


def checkpoint(family: str, root: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    patch = PATCH[family]
    make_checkpoint(root, patch_size=patch, merge_size=2, min_pixels=(2 * patch) ** 2, max_pixels=(16 * patch) ** 2)
    tokenizer = ModelTokenizer.load(root)
    special = {name: tokenizer.token_id(f"<|{name}|>") for name in ("image_pad", "vision_start", "vision_end")}
    text = {"vocab_size": tokenizer.vocab_size, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 4096}
    ids = {"image_token_id": special["image_pad"], "vision_start_token_id": special["vision_start"],
           "vision_end_token_id": special["vision_end"]}
    torch.manual_seed(seed)
    if family == "qwen3vl":
        config = Qwen3VLConfig(
            text_config={**text, "head_dim": 64, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                                     "mrope_section": [8, 12, 12],
                                                                     "mrope_interleaved": True}},
            vision_config={"depth": 1, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "patch_size": patch,
                           "spatial_merge_size": 2, "out_hidden_size": 128, "deepstack_visual_indexes": [0],
                           "num_position_embeddings": 256}, **ids)
        model: torch.nn.Module = Qwen3VLForConditionalGeneration(config)
    else:
        config = Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                     "mrope_section": [8, 12, 12]}},
            vision_config={"depth": 1, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "patch_size": patch,
                           "spatial_merge_size": 2, "out_hidden_size": 128, "window_size": 112,
                           "fullatt_block_indexes": [0]}, **ids)
        model = Qwen2_5_VLForConditionalGeneration(config)
    return root, model.eval()


def image_processor(root: Path) -> Qwen2VLImageProcessorPil:
    config = json.loads((root / "preprocessor_config.json").read_text())
    config.pop("image_processor_type")
    return Qwen2VLImageProcessorPil(**config)


@dataclass
class TransformersEngine:
    """Generates in-process; records what it was given and what it used, like an engine's own log."""

    model: torch.nn.Module
    tokenizer: ModelTokenizer
    processor: Qwen2VLImageProcessorPil
    max_new_tokens: int = 12
    grids: list[list[int]] = field(default_factory=list)  # the processor's tokens per image, per step
    steps: list[list[int]] = field(default_factory=list)  # the input_ids of every step

    async def stream(self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
                     input_ids: list[int] | None = None) -> AsyncIterator[ModelChunk]:
        if input_ids is None:
            raise AssertionError("the conformance test runs token-in: the gateway must send input_ids")
        pictures = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
        extra: dict[str, Any] = {}
        if pictures:
            processed = self.processor(images=pictures, return_tensors="pt")
            extra = {"pixel_values": processed["pixel_values"], "image_grid_thw": processed["image_grid_thw"]}
            merge = self.processor.merge_size ** 2
            self.grids.append([int(g.prod()) // merge for g in processed["image_grid_thw"]])
        ids = torch.tensor([input_ids])
        # Random weights rarely end their turn: odd steps are made to end it at max_new_tokens (generate's
        # forced_eos_token_id), even steps are cut short by the limit, so both boundaries occur.
        step = len(self.steps) + 1
        self.steps.append(input_ids)
        end = self.tokenizer.token_id("<|im_end|>")
        extra.update({"forced_eos_token_id": end} if step % 2 else {"suppress_tokens": [end]})
        with torch.no_grad():  # transformers refuses ids whose image tokens do not match the features
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                      max_new_tokens=self.max_new_tokens, output_scores=True,
                                      return_dict_in_generate=True, eos_token_id=self.tokenizer.token_id("<|im_end|>"),
                                      pad_token_id=self.tokenizer.token_id("<|endoftext|>"), **extra)
        completion = out.sequences[0, len(input_ids):].tolist()
        logprobs = [float(torch.log_softmax(score[0], -1)[token]) for score, token in zip(out.scores, completion,
                                                                                          strict=True)]
        end = self.tokenizer.token_id("<|im_end|>")
        text = self.tokenizer.decode([t for t in completion if t != end])
        yield ModelChunk(text=text, prompt_token_ids=list(input_ids), output_token_ids=completion,
                         output_logprobs=logprobs, token_in=True)
        yield ModelChunk(finish_reason="stop" if completion and completion[-1] == end else "length",
                         input_tokens=len(input_ids), output_tokens=len(completion),
                         num_image_tokens=sum(self.grids[-1]) if pictures else 0, token_in=True)
