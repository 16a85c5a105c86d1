"""Writing a tiny checkpoint directory: tokenizer, config, random weights, chat template, image processor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from toolfabric_server.model.tiny import tokens
from toolfabric_server.model.tiny.families import FAMILIES

VOCAB = 4096  # trained BPE entries before the added tokens


def make_tiny(family_name: str, out: Path, seed: int = 0) -> Path:
    """Builds the checkpoint in `out` (replaced if it exists); the same seed gives the same bytes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, PreTrainedTokenizerFast

    family = FAMILIES[family_name]
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    trained = tokens.train(tokens.corpus(), family.added, VOCAB)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained, eos_token="<|im_end|>", pad_token="<|endoftext|>",  # noqa: S106 - a token
        chat_template=family.chat_template, model_max_length=32768, clean_up_tokenization_spaces=False)
    tokenizer.save_pretrained(tmp)
    ids = {t: i for t in (*tokens.SPECIAL, *family.added) if (i := trained.token_to_id(t)) is not None}
    vocab_size = -(-trained.get_vocab_size() // 64) * 64  # padded, as real checkpoints are

    config = family.config(vocab_size, ids)
    torch.manual_seed(seed)
    loader = AutoModelForImageTextToText if family.vision else AutoModelForCausalLM
    model = loader.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
         "pad_token_id": ids["<|endoftext|>"], "do_sample": True, "temperature": 1.0}, indent=2) + "\n")
    if family.vision:
        (tmp / "preprocessor_config.json").write_text(json.dumps(family.preprocessor_config(), indent=2) + "\n")
    (tmp / "toolfabric_tiny.json").write_text(json.dumps(
        {"family": family.name, "dialect": family.dialect, "seed": seed, "random_weights": True,
         "note": "made by `toolfabric model make-tiny`: random weights, it emits garbage by design"}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
