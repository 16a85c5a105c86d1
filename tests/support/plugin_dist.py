"""Installed-distribution metadata for plugins, in a directory put on sys.path / PYTHONPATH.

`importlib.metadata` finds entry points in `*.dist-info/entry_points.txt` on the path, which is all
`pip install` leaves behind for them; writing that file is installing the plugin's metadata, without
touching the shared environment.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.plugins import GROUP

ROOT = Path(__file__).resolve().parents[2]


def declared_plugins() -> dict[str, str]:
    """The `toolfabric.tools` entry points this repository's pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(project["entry-points"][GROUP])


def write_dist(site: Path, distribution: str, plugins: dict[str, str]) -> Path:
    info = site / f"{distribution}-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0.0\n")
    lines = [f"[{GROUP}]", *(f"{name} = {value}" for name, value in plugins.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def env_with(site: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default os.environ) with `site` and the repository on PYTHONPATH, for child processes."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


@contextmanager
def on_path(site: Path) -> Iterator[None]:
    """`site` on this process's sys.path, with the catalog re-read while it is there."""
    from services import catalog

    sys.path.insert(0, str(site))
    catalog.plugins.cache_clear()
    catalog.catalog.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        catalog.plugins.cache_clear()
        catalog.catalog.cache_clear()
