"""`toolfabric model make-tiny`: deterministic checkpoints whose tokenizer keeps the dialects' special tokens whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolfabric_server.model.engine_venv import engine_python, engine_venv
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.model.tiny import fingerprint

CHECK_TOKENIZER = r"""
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
out = {}
for text in json.loads(sys.argv[2]):
    ids = tok.encode(text, add_special_tokens=False)
    out[text] = {"ids": ids, "decoded": tok.decode(ids)}
print(json.dumps(out))
"""


def make(out: Path, family: str, seed: int) -> Path:
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "model", "make-tiny", "--family", family,
                           "--seed", str(seed), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.parametrize("family", ["qwen3vl", "qwen3", "deepeyes"])
def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path, family: str) -> None:
    a = make(tmp_path / "a", family, 7)
    b = make(tmp_path / "b", family, 7)
    c = make(tmp_path / "c", family, 8)
    assert fingerprint(a) == fingerprint(b)
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()  # the tokenizer has no seed
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                "chat_template.jinja", "toolfabric_tiny.json"}
    if family != "qwen3":
        expected.add("preprocessor_config.json")
    assert expected <= {p.name for p in a.iterdir()}
    assert json.loads((a / "toolfabric_tiny.json").read_text())["random_weights"] is True


# Qwen3-VL's tokenizer has <think>, <tool_response> as single added tokens; Qwen2.5-VL's (DeepEyes) has not.
SINGLE = {
    "qwen3vl": ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<tool_call>",
                "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>", "<|endoftext|>"],
    "deepeyes": ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<tool_call>",
                 "</tool_call>", "<|endoftext|>"],
}


@pytest.mark.parametrize("family", ["qwen3vl", "deepeyes"])
def test_special_tokens_are_single_ids_and_text_round_trips(tmp_path: Path, family: str) -> None:
    out = make(tmp_path / family, family, 0)
    prompt = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Wer ist das? ¿Qué? 宇航员 🚀\n"
              "<|im_end|>\n<|im_start|>assistant\n<think>x</think><tool_call>{\"name\": \"zoom\"}</tool_call>")
    texts = [*SINGLE[family], prompt]
    script = tmp_path / "check.py"
    script.write_text(CHECK_TOKENIZER)
    done = subprocess.run([str(engine_python(engine_venv(ModelSettings()))), str(script), str(out),
                           json.dumps(texts)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    ids = {t: seen[t]["ids"] for t in SINGLE[family]}
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len(set(map(tuple, ids.values()))) == len(ids)  # distinct
    assert seen[prompt]["decoded"] == prompt  # byte-level BPE: any text, special tokens included, comes back
    if family == "deepeyes":
        assert len(seen[prompt]["ids"]) > 1 and "<think>" not in json.dumps(ids)
