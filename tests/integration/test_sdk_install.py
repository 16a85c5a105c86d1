"""The SDK on its own: a fresh venv of the oldest supported Python with only the SDK's declared dependencies
and the `toolfabric/` package drives the real gateway, and no server module is ever imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OLDEST = Path("/root/.pyenv/versions/3.9.18/bin/python")
SERVER_SIDE = ("gateway", "services", "celery", "redis", "tritonclient", "pydantic", "cv2", "httpx", "numpy")

# Runs inside the fresh venv: a client call or the CLI, then the top-level modules that got imported.
PROBE = """
import json, sys
target, what = sys.argv[1], sys.argv[2]
try:
    if what == "ask":
        from toolfabric import Client
        with Client(target, timeout_s=60) as client:
            result = client.ask('{"script": ["<answer>from the SDK</answer>"]}', model="toolfabric_scripted")
        print("ANSWER", result.answer, result.status)
    else:
        from toolfabric.cli.main import main
        sys.argv = ["toolfabric", "run", '{"script": ["<answer>from the CLI</answer>"]}', "--target", target,
                    "--model", "toolfabric_scripted", "--out", ""]
        code = main(sys.argv[1:])
        print("EXIT", code)
finally:
    print("MODULES", json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh venv with only the SDK's dependencies, folder holding only the toolfabric package)."""
    base = tmp_path_factory.mktemp("sdk")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    interpreter = str(OLDEST) if OLDEST.exists() else sys.executable
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(base / "venv")], check=True, timeout=60)
    python = base / "venv" / "bin" / "python"
    version, site = subprocess.run(
        [str(python), "-c", "import sys, sysconfig; print(f'{sys.version_info[0]}.{sys.version_info[1]}', "
                            "sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.split()
    # The test's own pip resolves the dependencies from PyPI for the venv's Python (wheels for that version),
    # which is much faster than bootstrapping pip inside the venv.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                    "--only-binary=:all:", "--python-version", version, "--target", site, *dependencies],
                   check=True, timeout=300)
    source = base / "src"
    shutil.copytree(ROOT / "toolfabric", source / "toolfabric", ignore=shutil.ignore_patterns("__pycache__"))
    return python, source


def _probe(sdk: tuple[Path, Path], target: str, what: str) -> tuple[str, list[str]]:
    python, source = sdk
    out = subprocess.run([str(python), "-c", PROBE, target, what], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}, cwd=source)
    modules = json.loads(out.stdout.rsplit("MODULES ", 1)[1])
    return out.stdout + out.stderr, modules


def test_the_sdk_alone_asks_the_gateway(stack: EmbeddedStack, sdk_python: tuple[Path, Path]) -> None:
    version = subprocess.run([str(sdk_python[0]), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if OLDEST.exists():
        assert version == "(3, 9)"
    output, modules = _probe(sdk_python, stack.target, "ask")
    assert "ANSWER from the SDK STATUS_COMPLETED" in output, output
    assert not set(SERVER_SIDE) & set(modules), output


def test_the_cli_alone_runs_a_turn(stack: EmbeddedStack, sdk_python: tuple[Path, Path]) -> None:
    output, modules = _probe(sdk_python, stack.target, "run")
    assert "from the CLI" in output and "EXIT 0" in output, output
    assert not set(SERVER_SIDE) & set(modules), output
