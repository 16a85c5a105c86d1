"""The committed stubs in toolfabric/v1/ are what the .proto generates (regenerate: make protos)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", "protos", "--python_out=.", "--pyi_out=.",
                    "--grpc_python_out=.", "protos/toolfabric/v1/fabric.proto"], cwd=tmp_path, check=True)
    for name in ("fabric_pb2.py", "fabric_pb2.pyi", "fabric_pb2_grpc.py"):
        fresh = (tmp_path / "toolfabric" / "v1" / name).read_text()
        assert fresh == (ROOT / "toolfabric" / "v1" / name).read_text(), f"{name} is stale: run `make protos`"


def test_stubs_live_in_one_place() -> None:
    # Not in the venvs (.venv, the engine venv .venv-model), which carry other packages' stubs.
    found = [p.relative_to(ROOT) for p in ROOT.rglob("*_pb2*.py") if not any(x.startswith(".venv") for x in p.parts)]
    assert sorted(str(p.parent) for p in found) == ["toolfabric/v1"] * len(found)
