"""`up --model PATH`: a checkpoint directory is served on the engine its architecture runs on here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.devstack import neural_models
from toolfabric_server.model.settings import ModelSettings


def checkpoint(tmp_path: Path, name: str, model_type: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": model_type}))
    return directory


def test_a_trained_qwen3vl_checkpoint_runs_on_transformers_under_its_folder_name(tmp_path: Path) -> None:
    model = neural_models.resolve(str(checkpoint(tmp_path, "trained-r3", "qwen3_vl")))
    assert (model.name, model.family, model.engine, model.dialect) == ("trained_r3", "qwen3vl", "hf", "qwen3vl")
    assert model.weights == (tmp_path / "trained-r3").resolve()
    other = neural_models.from_checkpoint(checkpoint(tmp_path, "b", "qwen2_5_vl"), name="other")
    env = neural_models.gateway_env(ModelSettings(), model, other)
    assert env["TOOLFABRIC_MODEL_DEFAULT_MODEL"] == "trained_r3"
    assert json.loads(env["TOOLFABRIC_MODEL_DIALECTS"]) == {"trained_r3": "qwen3vl", "other": "deepeyes"}
    assert json.loads(env["TOOLFABRIC_MODEL_CHECKPOINTS"])["other"] == str((tmp_path / "b").resolve())


def test_what_cannot_be_served_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="model_type 'llama' is not served here"):
        neural_models.resolve(str(checkpoint(tmp_path, "llama", "llama")))
    with pytest.raises(ConfigurationError, match="not a checkpoint directory"):
        neural_models.resolve(str(tmp_path))
    with pytest.raises(ConfigurationError, match="unknown model 'tiny-gpt'"):
        neural_models.resolve("tiny-gpt")
