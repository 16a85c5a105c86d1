"""Settings are read once, where a process starts, and passed down: no function below asks the environment again.

An AST scan of the server's code: a call of a settings accessor (the cached `common()`, `model()`, … of the
settings modules) or a settings class built from the environment (`CommonSettings()`) is allowed only in the
entry points listed here. A new read elsewhere fails this test; pass the settings in instead.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from tests.settings_modules import ROOT, settings_classes, settings_modules

# (module file, function) where a process reads its settings; `*` = the whole module. Each says which process
# starts there. (The settings modules themselves, which define the classes and accessors, are not scanned.)
ENTRY_POINTS: dict[str, set[str]] = {
    # the gateway process, and `toolfabric mcp` on stdio (a door of its own: it cannot use the gateway's set)
    "server/toolfabric_server/gateway/process_settings.py": {"read"},
    "server/toolfabric_server/gateway/mcp/stdio.py": {"main"},
    # a tool worker process (`toolfabric worker SERVICE`): common and worker settings, then its service's own
    "server/toolfabric_server/common/worker.py": {"run_worker"},
    "server/toolfabric_server/tools/fetch/tasks.py": {"register"},
    "server/toolfabric_server/tools/search/tasks.py": {"register"},
    "server/toolfabric_server/tools/vision/tasks.py": {"register"},
    "server/toolfabric_server/tools/mcp/tasks.py": {"register"},
    "server/toolfabric_server/tools/ocr/handlers.py": {"handlers"},
    # CLI commands (each reads at its own start)
    "server/toolfabric_server/cli.py": {"*"},
    "server/toolfabric_server/store/cli.py": {"*"},
    "server/toolfabric_server/evals/cli.py": {"*"},
    "server/toolfabric_server/export/cli.py": {"export"},
    "server/toolfabric_server/index/indexer.py": {"read"},  # IndexingSettings.read, at `toolfabric index`'s start
    # the dev stack (`toolfabric up`, the tests' stacks): the model settings of the processes it starts
    "server/toolfabric_server/devstack/stack.py": {"__init__"},
}


def _accessors() -> dict[str, set[str]]:
    """Module name → its cached settings accessors (zero-argument functions returning a settings object)."""
    found: dict[str, set[str]] = {}
    for module in settings_modules():
        for name, value in vars(module).items():
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == module.__name__:
                found.setdefault(module.__name__, set()).add(name)
    return found


def _reads(path: Path, accessors: dict[str, set[str]], classes: set[str]) -> list[tuple[str, int, str]]:
    """(enclosing function, line, call) of every settings read in one file."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()  # accessors imported by name
    modules: dict[str, str] = {}  # local name → settings module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.name in accessors.get(node.module, ()):
                    names.add(alias.asname or alias.name)
                if f"{node.module}.{alias.name}" in accessors:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            modules.update({alias.asname or alias.name: alias.name for alias in node.names if alias.name in accessors})
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                func = child.func
                called = ast.unparse(func)
                if ((isinstance(func, ast.Name) and func.id in names | classes)
                        or (isinstance(func, ast.Attribute) and (
                            func.attr in accessors.get(modules.get(ast.unparse(func.value), ""), ())
                            or func.attr in classes))):
                    found.append((function, child.lineno, called))
            visit(child, function)

    visit(tree, "<module>")
    return found


def server_files() -> list[Path]:
    return sorted((ROOT / "server" / "toolfabric_server").rglob("*.py"))


def test_settings_are_read_only_where_a_process_starts() -> None:
    accessors = _accessors()
    classes = {cls.__name__ for cls in settings_classes()}
    settings_files = {Path(inspect.getfile(m)).resolve() for m in settings_modules()}
    misplaced = []
    for path in server_files():
        if path.resolve() in settings_files:
            continue
        allowed = ENTRY_POINTS.get(path.relative_to(ROOT).as_posix(), set())
        for function, line, called in _reads(path, accessors, classes):
            if "*" not in allowed and function not in allowed:
                misplaced.append(f"{path.relative_to(ROOT)}:{line} {called}() in {function}")
    assert not misplaced, ("settings read below a process's start (pass them in from the entry point, or list a new "
                           "entry point in ENTRY_POINTS):\n" + "\n".join(misplaced))


def test_the_scan_sees_each_kind_of_read(tmp_path: Path) -> None:
    """The scan itself: an accessor imported by name, one through its module, and a settings class built."""
    source = tmp_path / "probe.py"
    source.write_text("from toolfabric_server.common import settings\n"
                      "from toolfabric_server.model.settings import model\n"
                      "from toolfabric_server.tools.vision.settings import VisionSettings\n"
                      "def a():\n    return settings.common()\n"
                      "def b():\n    return model().triton_url\n"
                      "def c():\n    return VisionSettings()\n"
                      "def d(common):\n    return common.redis_url\n")
    reads = _reads(source, _accessors(), {cls.__name__ for cls in settings_classes()})
    assert [(function, called) for function, _, called in reads] == [
        ("a", "settings.common"), ("b", "model"), ("c", "VisionSettings")]


def test_every_listed_entry_point_exists() -> None:
    """A renamed entry point must be renamed here too, not silently allow nothing."""
    for file, functions in ENTRY_POINTS.items():
        tree = ast.parse((ROOT / file).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert functions - {"*"} <= defined, f"{file} has no {sorted(functions - {'*'} - defined)}"

