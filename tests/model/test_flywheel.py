"""The flywheel's short version (`toolfabric flywheel` with a few dozen questions and a few training steps): real
baseline trajectories, the real export, TRL's SFTTrainer, the trained checkpoint served by the transformers engine
behind Triton and evaluated through the gateway beside the untrained one. It asserts that the loss falls, that
both checkpoints are served and evaluated for real, that the token check classifies every difference, and that the
report is written. It trains on each trajectory's first step only (~1.3k tokens: the 4-tool system prompt, the
question, the baseline's first step). Not asserted: a parseable tool call. On the ~11 rows of 16 questions, 60 steps
leave `\n` runs and 120 steps memorise the rows (loss 0.04) yet write garbled calls on a new question; the 169-row,
200-step run of `make flywheel` does write them (docs/flywheel.md, Figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(1800)  # ~4 min on a quiet machine; 17 min at load 20
def test_short_flywheel_trains_a_model_that_calls_tools(tmp_path: Path, engine_venv: Path, tiny_models: Path) -> None:
    out = tmp_path / "flywheel"
    env = {**os.environ, "TOOLFABRIC_MODEL_TINY_CACHE_DIR": str(tiny_models)}
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "flywheel", str(out), "--train-limit", "16",
                           "--heldout-limit", "4", "--train-steps", "60", "--steps-per-row", "1",
                           "--model-max-steps", "1", "--model-max-tokens", "256"],
                          capture_output=True, text=True, env=env, timeout=1750)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "flywheel.json").read_text())

    kept = summary["curation"]["kept"]
    assert 0 < kept < summary["curation"]["trajectories"]  # the filters dropped some and kept some
    losses = [e["loss"] for e in summary["train_log"]["losses"]]
    assert len(losses) == 60 and summary["train_log"]["trainer"] == "trl.SFTTrainer"
    assert losses[-1] < losses[0] - 1.0, losses  # the loss falls

    baseline, untrained, trained = summary["compare"]["tool_use"].values()
    assert baseline["n"] == untrained["n"] == trained["n"] == 4
    assert baseline["schema_validity"] == 1.0 and baseline["answered"] == 1.0
    assert untrained["steps"] >= 4 and trained["steps"] >= 4  # both checkpoints generated through the gateway

    check = summary["tokencheck"]  # the trained model's trajectories carry token ids; TRL re-reads them
    assert check["samples"] >= 1
    assert set(check["differences"]) <= {"trl_tail", "newline_after_im_end", "fabric_im_end", "ids", "other_mask"}
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "RL export vs TRL" in report
