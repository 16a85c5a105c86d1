"""scripts/build-image.sh and scripts/container-test.sh on a machine that lacks what they need."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.k8s.manifests import ROOT


def _path_without_engines(tmp_path: Path) -> str:
    """A PATH with the shell tools the scripts use and no podman or docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "dirname", "basename", "sed", "head", "cat", "stat", "mkdir", "env"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize("script", ["build-image.sh", "container-test.sh"])
def test_script_without_podman_or_docker_names_what_to_install(tmp_path: Path, script: str) -> None:
    env = {"PATH": _path_without_engines(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, env=env,
                          timeout=30, check=False, cwd=tmp_path)
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"{script}: no container engine: install podman")
    assert "apt-get install podman" in line and "Docker" in line


def test_build_script_names_a_missing_engine_given_explicitly(tmp_path: Path) -> None:
    env = {"PATH": _path_without_engines(tmp_path), "HOME": str(tmp_path), "ENGINE": "podman"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert done.returncode != 0 and done.stderr.strip() == "build-image.sh: ENGINE=podman is not installed"
