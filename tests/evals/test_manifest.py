"""A run resumes only with the options it was started with; otherwise the refusal names what differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolfabric_server.evals import manifest
from toolfabric_server.evals.errors import RunError


def _manifest(**options: object) -> dict[str, object]:
    base = {"mode": "deep_research", "model": "", "temperature": 0.2, "max_tokens": 8192, "seed": None}
    return {"run": "r", "dataset": "/d.jsonl", "items": 3, "target": "127.0.0.1:1", "options": {**base, **options},
            "labels": {"suite": "x"}, "judge": "triton:toolfabric_judge", "metric": "judge"}


def test_a_resume_with_the_same_options_is_accepted_whatever_the_target(tmp_path: Path) -> None:
    manifest.write(tmp_path, _manifest())
    again = {**_manifest(), "target": "127.0.0.1:2", "items": 2}
    manifest.write(tmp_path, again)  # another address, --limit: still the same run
    assert json.loads((tmp_path / "run.json").read_text())["target"] == "127.0.0.1:1"


def test_a_resume_with_other_options_is_refused_naming_each_difference(tmp_path: Path) -> None:
    manifest.write(tmp_path, _manifest(max_tokens=20480))
    changed = {**_manifest(max_tokens=8192, temperature=0.7), "judge": None}
    with pytest.raises(RunError) as refused:
        manifest.write(tmp_path, changed)
    message = str(refused.value)
    assert "max_tokens 20480 → 8192" in message and "temperature 0.2 → 0.7" in message
    assert "judge 'triton:toolfabric_judge' → None" in message and "new --name" in message
    assert json.loads((tmp_path / "run.json").read_text())["options"]["max_tokens"] == 20480  # left as it was


def test_a_manifest_from_before_bundles_resumes_without_one(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(_manifest()))
    assert manifest.differences(manifest.read(tmp_path), {**_manifest(), "bundle": None}) == []
    assert manifest.differences(manifest.read(tmp_path), {**_manifest(), "bundle": "sha256:ab"}) == [
        "bundle None → 'sha256:ab'"]
