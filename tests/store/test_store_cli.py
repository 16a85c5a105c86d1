"""`toolfabric store delete | purge` on the store the settings name (here SQLite under a data dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.store import ImageFiles, TrajectoryStore
from services.store.trajectories import make_engine
from tests.store.events import new, png, run, stored


def store_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOOLFABRIC_DATA_DIR": str(data_dir), "TOOLFABRIC_STORE_URL": ""}
    return subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "store", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_delete_and_purge_remove_trajectories_and_their_unshared_images(tmp_path: Path) -> None:
    store = TrajectoryStore(make_engine("", tmp_path), ImageFiles(tmp_path / "images"))
    own, shared = stored(png((9, 9, 9))), stored(png((7, 7, 7)))
    store.write([new("old", created_at=100.0), new("new")],
                run("old", inputs=[own[0], shared[0]], at=150.0) + run("new", inputs=[shared[0]]), dict([own, shared]))
    store.close()

    out = store_cli(tmp_path, "delete", "old", "ghost")
    assert out.returncode == 1 and "deleted 1 trajectories and 1 images; 1 id(s) were not in the store" in out.stdout
    assert not (tmp_path / "images").joinpath(own[0][7:9], own[0][9:]).exists()
    out = store_cli(tmp_path, "purge", "--older-than-days", "1")
    assert out.returncode == 0 and "deleted 1 trajectories" in out.stdout and "and 1 images" in out.stdout
    assert not any(p.is_file() for p in (tmp_path / "images").rglob("*"))
    assert store_cli(tmp_path, "purge", "--older-than-days", "0").returncode == 2
