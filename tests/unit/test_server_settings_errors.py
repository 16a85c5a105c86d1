"""A server command started without a required setting (as a container would be) stops at once with
one line naming the variable, instead of a traceback or a connection retry loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFABRIC_")}
    return subprocess.run([sys.executable, "-m", "toolfabric.cli.main", *argv], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT), **env}, check=False)


@pytest.mark.parametrize(("argv", "variable", "example"), [
    (("worker", "vision"), "TOOLFABRIC_REDIS_URL", "redis://:PASSWORD@redis:6379/0"),
    (("gateway",), "TOOLFABRIC_REDIS_URL", "redis://:PASSWORD@redis:6379/0"),
    (("gateway",), "TOOLFABRIC_MODEL_TRITON_URL", "triton:8001"),
])
def test_server_without_a_required_address_exits_with_one_line(argv: tuple[str, ...], variable: str,
                                                               example: str) -> None:
    done = _run(*argv, **{variable: ""})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"toolfabric {argv[0]}: not set: {variable} (e.g. {example})"]


def test_indexer_runs_without_a_redis_url(tmp_path: Path) -> None:
    # The demo indexer (an init container without Redis settings) runs from the same image.
    page = tmp_path / "site" / "page.html"
    page.parent.mkdir()
    page.write_text("<html><head><title>Eileen Collins</title></head><body><p>Commanded STS-93.</p></body></html>")
    done = _run("index", str(page.parent), "--no-progress", TOOLFABRIC_REDIS_URL="",
                TOOLFABRIC_DATA_DIR=str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert any((tmp_path / "data").iterdir())


def test_unparsable_setting_is_named_in_one_line() -> None:
    done = _run("worker", "fetch", TOOLFABRIC_WORKER_CONCURRENCY="two")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("toolfabric worker: TOOLFABRIC_WORKER_CONCURRENCY: Input should be a valid integer")
