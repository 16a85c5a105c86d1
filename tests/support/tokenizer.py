"""A checkpoint directory with only what the gateway reads of one (tokenizer.json, preprocessor_config.json), for
tests in the fabric venv: the tokenizer is make-tiny's own (model/tiny/tokens.py, needs only
`tokenizers`); the weights, which need torch, are left out."""

from __future__ import annotations

import json
from pathlib import Path

from toolfabric_server.model.tiny import tokens


def make_checkpoint(root: Path, *, patch_size: int = 16, merge_size: int = 2, min_pixels: int = 32 * 32,
                    max_pixels: int = 512 * 512) -> Path:
    """The tokenizer and a Qwen-VL image processor config (transformers 5 layout)."""
    root.mkdir(parents=True, exist_ok=True)
    tokens.train(tokens.corpus(), tokens.ADDED_QWEN3).save(str(root / "tokenizer.json"))
    (root / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "patch_size": patch_size, "merge_size": merge_size,
        "temporal_patch_size": 2, "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}))
    return root
