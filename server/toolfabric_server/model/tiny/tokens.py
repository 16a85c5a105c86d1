"""The dialects' token inventory and a byte-level BPE tokenizer trained on local text.

The added tokens and their order are Qwen2.5-VL's and Qwen3-VL's own (Qwen3 adds `<tool_response>`,
`<think>` and their closers as single tokens; Qwen2.5-VL has none of those, so DeepEyes' tags are
several tokens there too). The pre-tokenizer is Qwen2's split regex followed by byte-level mapping,
so every byte string encodes and decodes losslessly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

import toolfabric

# Special (control) tokens, in the Qwen2.5-VL / Qwen3-VL order.
SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Added but not special: they stay in decoded text (the dialects parse them).
ADDED_QWEN25 = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
ADDED_QWEN3 = (*ADDED_QWEN25, "<tool_response>", "</tool_response>", "<think>", "</think>")

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PACKAGE = Path(__file__).resolve().parents[2]  # toolfabric_server/


def corpus() -> list[str]:
    """The demo corpus (pages and README) and the fabric's own prompts and dialects, as text."""
    roots = [Path(toolfabric.__file__).resolve().parent / "demo", PACKAGE / "model" / "dialects",
             PACKAGE / "model" / "baseline"]
    files: list[Path] = []
    for root in roots:
        files.extend(sorted(p for p in root.rglob("*") if p.suffix in {".html", ".md", ".py"}) if root.is_dir()
                     else [root])
    return [p.read_text("utf-8", "replace") for p in files if p.is_file()]


def train(texts: Iterable[str], added: tuple[str, ...], vocab_size: int = 4096) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(list(texts), trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    return tokenizer
