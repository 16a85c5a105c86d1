"""Tiny models the project makes itself: a config with random weights and a locally trained tokenizer.

Nothing is fetched: `make_tiny` builds a checkpoint directory (config, safetensors, tokenizer, chat
template, image processor config for the VL families) that vLLM and transformers load like a real
one, deterministic for a seed. Needs torch and transformers (the model venv, scripts/setup-model.sh);
`tokens` alone needs only `tokenizers`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# The families `make-tiny` builds (model/tiny/families.py); here so the CLI lists them without torch.
FAMILY_NAMES = ("qwen3vl", "qwen3", "deepeyes")
# Bumped whenever what make-tiny writes changes, so cached checkpoints (devstack/neural_models.py) renew.
RECIPE = 3


def fingerprint(directory: Path) -> str:
    """One hash over every file's name and bytes (what determinism is checked on)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
