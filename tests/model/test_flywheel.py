"""The flywheel's short version (`toolfabric flywheel` with a few dozen questions and a few hundred small training
steps): real baseline trajectories, the real export, TRL's SFTTrainer, the trained checkpoint served by the
transformers engine behind Triton and evaluated through the gateway beside the untrained one. It trains on each
trajectory's first step only (~1.1-1.3k tokens: the 4-tool system prompt, the question, the baseline's first step)
of the 64 first training questions (~45 rows), 300 steps, and asserts that the loss falls, that the served trained
model makes at least one schema-valid tool call on the 8 first HELD-OUT questions (topics never trained on) where the
untrained one makes none, that the token check classifies every difference, and that the report is written.

What it shows, honestly: the format, not the content. Measured (docs/flywheel.md): every one of the 8 held-out steps
is a valid call — the baseline's crop-and-zoom `code` call for the photo questions (its first step is the same for
every photo), a `text_search` for the text questions whose query is a garbled training question, never this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(1800)  # ~6.5 min at load 7 (2 cores), most of it the 300 training steps
def test_short_flywheel_trains_a_model_that_calls_tools(tmp_path: Path, engine_venv: Path, tiny_models: Path) -> None:
    out = tmp_path / "flywheel"
    env = {**os.environ, "TOOLFABRIC_MODEL_TINY_CACHE_DIR": str(tiny_models)}
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "flywheel", str(out), "--train-limit", "64",
                           "--heldout-limit", "8", "--train-steps", "300", "--steps-per-row", "1",
                           "--model-max-steps", "1", "--model-max-tokens", "256"],
                          capture_output=True, text=True, env=env, timeout=1750)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "flywheel.json").read_text())

    kept = summary["curation"]["kept"]
    assert 0 < kept < summary["curation"]["trajectories"]  # the filters dropped some and kept some
    losses = [e["loss"] for e in summary["train_log"]["losses"]]
    assert len(losses) == 300 and summary["train_log"]["trainer"] == "trl.SFTTrainer"
    assert losses[-1] < losses[0] - 1.0, losses  # the loss falls

    baseline, untrained, trained = summary["compare"]["tool_use"].values()
    assert baseline["n"] == untrained["n"] == trained["n"] == 8
    assert baseline["schema_validity"] == 1.0 and baseline["answered"] == 1.0
    assert untrained["steps"] >= 8 and trained["steps"] >= 8  # both checkpoints generated through the gateway
    # The served trained model writes parseable, schema-valid tool calls on questions it was not trained on.
    assert trained["valid_calls"] >= 1 and untrained["valid_calls"] == 0, (trained, untrained)

    check = summary["tokencheck"]  # the trained model's trajectories carry token ids; TRL re-reads them
    assert check["samples"] >= 1
    assert set(check["differences"]) <= {"trl_tail", "newline_after_im_end", "fabric_im_end", "ids", "other_mask"}
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "RL export vs TRL" in report
