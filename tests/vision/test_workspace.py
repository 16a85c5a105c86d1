"""Call directories: what the worker reads back from untrusted code, and cleaning up after crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolfabric_server.tools.vision.sandbox import protocol
from toolfabric_server.tools.vision.sandbox.workspace import Workspace, prune_stale


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_call_dir(root: Path, name: str, age_s: float) -> Path:
    path = root / name
    (path / "work").mkdir(parents=True)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_directories_left_by_a_killed_worker_are_pruned(tmp_path: Path) -> None:
    gone = dead_pid()
    orphan = make_call_dir(tmp_path, f"call-{gone}-abc", age_s=120)
    just_made = make_call_dir(tmp_path, f"call-{gone}-new", age_s=5)
    running = make_call_dir(tmp_path, f"call-{os.getpid()}-live", age_s=120)
    ancient = make_call_dir(tmp_path, "call-legacy", age_s=7200)
    removed = prune_stale(tmp_path)
    assert sorted(removed) == sorted([orphan.name, ancient.name])
    assert just_made.exists() and running.exists()


def test_garbage_in_the_result_file_reads_as_no_result(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    (ws.call_dir / protocol.RESULT_FILE).write_text('garbage{"value": "x"}')
    assert ws.result() is None
    (ws.call_dir / protocol.RESULT_FILE).write_text('{"value": 3, "error": "boom", "saved": [{"file": 1}]}')
    assert ws.result() == {"value": None, "error": None, "saved": [], "layers": []}
    ws.remove()
    assert not ws.call_dir.exists()


def test_a_forged_saved_path_outside_the_working_directory_is_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    files, problems = ws.outputs([{"file": "../result.json", "label": ""}], 5, 1024)
    assert files == [] and "is not a file name in the working directory" in problems[0]
    ws.remove()


@pytest.mark.parametrize(("size", "truncated"), [(100, False), (10_000, True), (10_000_000, True)])
def test_output_keeps_head_and_tail_within_the_budget(tmp_path: Path, size: int, truncated: bool) -> None:
    ws = Workspace(tmp_path)
    (ws.call_dir / protocol.OUTPUT_FILE).write_text("H" + "x" * (size - 2) + "T")
    text, cut = ws.output_text(400)
    assert cut is truncated and len(text) <= 400
    assert text.startswith("H") and text.endswith("T")
    if truncated:
        assert f"of {size} characters omitted" in text
    ws.remove()
