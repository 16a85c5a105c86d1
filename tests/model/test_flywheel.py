"""The flywheel's short version (`toolfabric flywheel` with a few dozen questions and a few training steps): real
baseline trajectories, the real export, TRL's SFTTrainer, the trained checkpoint served by the transformers engine
behind Triton and evaluated through the gateway beside the untrained one. It asserts what the issue asks of it:
the loss falls, the served trained model makes at least one parseable tool call, and the report is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(1200)
def test_short_flywheel_trains_a_model_that_calls_tools(tmp_path: Path, engine_venv: Path, tiny_models: Path) -> None:
    out = tmp_path / "flywheel"
    env = {**os.environ, "TOOLFABRIC_MODEL_TINY_CACHE_DIR": str(tiny_models)}
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "flywheel", str(out), "--train-limit", "24",
                           "--heldout-limit", "6", "--train-steps", "16", "--model-max-steps", "2",
                           "--model-max-tokens", "96"], capture_output=True, text=True, env=env, timeout=1150)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "flywheel.json").read_text())

    kept = summary["curation"]["kept"]
    assert 0 < kept < summary["curation"]["trajectories"]  # the filters dropped some and kept some
    losses = [e["loss"] for e in summary["train_log"]["losses"]]
    assert len(losses) == 16 and summary["train_log"]["trainer"] == "trl.SFTTrainer"
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses  # the loss falls

    baseline, untrained, trained = summary["compare"]["tool_use"].values()
    assert baseline["n"] == untrained["n"] == trained["n"] == 6
    assert trained["calls"] >= 1, summary["compare_table"]  # at least one parseable tool call, served for real
    assert trained["valid_calls"] > untrained["valid_calls"], summary["compare_table"]

    check = summary["tokencheck"]
    assert check["samples"] >= 1 and check["ids_equal"] >= 1
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "RL export vs TRL" in report
