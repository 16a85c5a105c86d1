"""A small byte-level BPE tokenizer with Qwen's chat special tokens, trained in the test (no download), and a
checkpoint directory holding it the way a real one does (tokenizer.json, preprocessor_config.json)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
# Ordinary tokens in Qwen's vocabulary (not special: the model writes them as text).
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<observation>",
         "</observation>", "<tool_response>", "</tool_response>"]
_CORPUS = [
    "You are a multimodal deep-research agent. Think, then call tools or answer.",
    "tool: zoom_in (call s1c1) the crop of the image; New images: <sub-image 1> (64x64, zoom_in output)",
    'Who flew STS-93? {"name": "text_search", "arguments": {"queries": ["STS-93 commander"]}}',
    "error (model_output): the step has neither a tool call nor an answer",
    "Eileen Collins commanded STS-93 in 1999, the first woman to command a Space Shuttle mission.",
]


def make_tokenizer(vocab_size: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 20, trainer)
    tok.add_tokens(ADDED)
    return tok


def make_checkpoint(root: Path, *, patch_size: int = 16, merge_size: int = 2, min_pixels: int = 32 * 32,
                    max_pixels: int = 512 * 512) -> Path:
    """A checkpoint directory with the tokenizer and a Qwen-VL image processor config (transformers 5 layout)."""
    root.mkdir(parents=True, exist_ok=True)
    make_tokenizer().save(str(root / "tokenizer.json"))
    (root / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "patch_size": patch_size, "merge_size": merge_size,
        "temporal_patch_size": 2, "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}))
    return root
