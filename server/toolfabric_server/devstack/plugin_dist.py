"""Entry-point metadata for plugins that are importable but not pip-installed (benchmarks, tests).

`importlib.metadata` finds entry points in `*.dist-info/entry_points.txt` on the path, which is all
`pip install` leaves behind for them; writing that file into a directory on PYTHONPATH installs a
plugin's metadata without touching the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolfabric_server.devstack.processes import source_roots
from toolfabric_server.tools.plugins import GROUP


def write_dist(site: Path, distribution: str, plugins: dict[str, str]) -> Path:
    """`site` with a distribution declaring `plugins` (entry point name → "module:attribute")."""
    info = site / f"{distribution}-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0.0\n")
    lines = [f"[{GROUP}]", *(f"{name} = {value}" for name, value in plugins.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def env_with(site: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default os.environ) with `site` and the fabric's sources on PYTHONPATH, for child processes."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *source_roots(), *filter(None, [env.get("PYTHONPATH")])])
    return env
