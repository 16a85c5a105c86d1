"""Plugins for tests: what this repository declares, and a written dist-info put on this process's path
(toolfabric_server.devstack.plugin_dist writes it; child processes get it through PYTHONPATH)."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolfabric_server.devstack.plugin_dist import env_with, write_dist
from toolfabric_server.tools.plugins import GROUP

SERVER_PYPROJECT = Path(__file__).resolve().parents[2] / "server" / "pyproject.toml"
__all__ = ["declared_plugins", "env_with", "on_path", "write_dist"]


def declared_plugins() -> dict[str, str]:
    """The `toolfabric.tools` entry points the server distribution declares (server/pyproject.toml)."""
    project = tomllib.loads(SERVER_PYPROJECT.read_text())["project"]
    return dict(project["entry-points"][GROUP])


@contextmanager
def on_path(site: Path) -> Iterator[None]:
    """`site` on this process's sys.path, with the catalog re-read while it is there."""
    from toolfabric_server import catalog

    sys.path.insert(0, str(site))
    catalog.plugins.cache_clear()
    catalog.catalog.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        catalog.plugins.cache_clear()
        catalog.catalog.cache_clear()
