"""Tool services of other packages, found through the `toolfabric.tools` entry point group.

A plugin package declares, in its own pyproject.toml (tools/ocr is the worked example)::

    [project.entry-points."toolfabric.tools"]
    ocr = "toolfabric_server.tools.ocr.plugin:PLUGIN"      # a toolfabric_server.common.tools.ToolPlugin

Each plugin is one service: its own Celery queue and worker (`toolfabric worker ocr`), its tools in
the catalog (ListTools, the system prompt of the modes they name). A plugin that fails to import,
is not a ToolPlugin, or takes a service or tool name something else already has is left out with a
`PluginProblem` saying why, and the error is logged; the other plugins and the built-ins load as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from toolfabric_server.common.tools import SERVICES, ToolPlugin, ToolSpec

GROUP = "toolfabric.tools"
# Answered by every worker itself (toolfabric_server.common.worker), so no plugin may declare it.
RESERVED_TOOLS = frozenset({"ping"})
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginProblem:
    entry_point: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.entry_point!r} left out: {self.message}"


@dataclass(frozen=True)
class Plugins:
    loaded: tuple[ToolPlugin, ...]
    problems: tuple[PluginProblem, ...]

    def get(self, service: str) -> ToolPlugin | None:
        return next((p for p in self.loaded if p.service == service), None)

    @property
    def specs(self) -> list[ToolSpec]:
        return [spec for plugin in self.loaded for spec in plugin.tools]


def installed() -> list[EntryPoint]:
    """The `toolfabric.tools` entry points of every installed distribution."""
    return list(entry_points(group=GROUP))


def load(found: Iterable[EntryPoint], builtin: Iterable[ToolSpec]) -> Plugins:
    """Import each entry point and keep the plugins that fit beside `builtin` and each other."""
    owner: dict[str, str] = {name: "the fabric itself" for name in RESERVED_TOOLS}
    for spec in builtin:
        for name in (spec.name, *spec.aliases):
            owner[name] = f"the built-in {spec.service} service"
    services: set[str] = {*SERVICES, "mcp"}  # mcp: the MCP client's queue (tools/mcp)
    loaded: list[ToolPlugin] = []
    problems: list[PluginProblem] = []
    seen: set[tuple[str, str]] = set()
    for ep in sorted(found, key=lambda e: (e.name, e.value)):
        if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        problem = _check(ep, owner, services, loaded)
        if problem is not None:
            log.error("%s", problem)
            problems.append(problem)
    return Plugins(tuple(loaded), tuple(problems))


def _check(ep: EntryPoint, owner: dict[str, str], services: set[str],
           loaded: list[ToolPlugin]) -> PluginProblem | None:
    try:
        plugin = ep.load()
    except Exception as exc:  # any import-time fault of a plugin stays the plugin's
        return PluginProblem(ep.name, f"importing {ep.value} failed: {type(exc).__name__}: {exc}")
    if not isinstance(plugin, ToolPlugin):
        return PluginProblem(ep.name, f"{ep.value} is a {type(plugin).__name__}, not a ToolPlugin")
    if plugin.service in services:
        return PluginProblem(ep.name, f"service name {plugin.service!r} is already taken")
    mine: dict[str, str] = {}
    for spec in plugin.tools:
        for name in (spec.name, *spec.aliases):
            taken = owner.get(name) or (f"its own tool {mine[name]!r}" if name in mine else None)
            if taken:
                return PluginProblem(ep.name, f"tool name {name!r} already belongs to {taken}")
            mine[name] = spec.name
    owner.update({name: f"plugin {ep.name!r}" for name in mine})
    services.add(plugin.service)
    loaded.append(plugin)
    return None
