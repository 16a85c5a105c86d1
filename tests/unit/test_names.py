"""Names defined once, from the proto: modes, statuses, service names and every error kind the fabric emits."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import get_args

import toolfabric_server
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.catalog import catalog
from toolfabric_server.common.errors import ToolError
from toolfabric_server.common.tools import ALL_MODES, SERVICES, AgentMode, check_service_name

ROOT = Path(__file__).resolve().parents[2]


def test_modes_and_statuses_are_the_proto_enums_in_lower_case() -> None:
    assert names.MODES == {"deep_research": pb.MODE_DEEP_RESEARCH, "general": pb.MODE_GENERAL, "plan": pb.MODE_PLAN}
    assert names.mode_name(pb.MODE_GENERAL) == "general"
    assert names.status_name(pb.STATUS_BUDGET_EXHAUSTED) == "budget_exhausted"
    assert set(get_args(AgentMode)) == set(names.MODES) == ALL_MODES
    assert names.FABRIC_SERVICE == "toolfabric.v1.Fabric"


def test_every_tool_belongs_to_a_known_service_and_only_known_modes() -> None:
    # Built-in services plus the installed plugins' (toolfabric_server.tools.plugins), each a valid queue name.
    known = set(catalog().services())
    assert set(SERVICES) <= known
    for spec in catalog().specs:
        assert spec.service in known and check_service_name(spec.service) == spec.service, spec.name
        assert spec.modes <= ALL_MODES, spec.name


def test_general_mode_offers_exactly_what_the_proto_says() -> None:
    # MODE_GENERAL: "thinking with images: code and image ops, plus web_visit".
    # Plugin services (e.g. ocr) join the modes they name; the proto's sentence is about the built-ins.
    general = [t for t in catalog().visible("general") if t.service in SERVICES]
    assert {t.service for t in general} == {"vision", "fetch"}
    assert [t.name for t in general if t.service == "fetch"] == ["web_visit"]
    assert {t.name for t in general if t.service == "vision"} == {t.name for t in catalog().visible("deep_research")
                                                                  if t.service == "vision"}


def _tool_error_kinds() -> set[str]:
    for module in pkgutil.walk_packages(toolfabric_server.__path__, "toolfabric_server."):
        if module.name.endswith(("errors", "summarize")):
            importlib.import_module(module.name)
    kinds, todo = set(), [ToolError]
    while todo:
        cls = todo.pop()
        kinds.add(cls.kind)
        todo += cls.__subclasses__()
    return kinds


def _literal_kinds() -> set[str]:
    """String literals the code passes as an error kind: failure("kind", …), ToolDispatchError("kind", …),
    error_kind= / code= keywords, and values assigned to *error_kind / error_type."""
    found: set[str] = set()

    def strings(node: ast.AST) -> set[str]:
        return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    for path in ROOT.glob("server/toolfabric_server/**/*.py"):
        if "repository" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("failure", "ToolDispatchError") and node.args and isinstance(node.args[0], ast.Constant):
                    found.add(node.args[0].value)
                for keyword in node.keywords:
                    if keyword.arg in ("error_kind", "code") and name in ("Observation", "Error", "ToolResult"):
                        found |= strings(keyword.value)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    targets = target.elts if isinstance(target, ast.Tuple) else [target]
                    values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value] * len(targets)
                    for t, v in zip(targets, values):
                        label = t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "")
                        if label.endswith(("error_kind", "error_type")):
                            found |= strings(v)
    return found


def test_every_error_kind_the_code_can_emit_is_listed_in_the_proto() -> None:
    emitted = _tool_error_kinds() | _literal_kinds()
    # (model_output is toolfabric_server.engine.step.MODEL_OUTPUT, read from this table: nothing to scan.)
    assert {"unknown_tool", "budget_exhausted", "model_unavailable", "worker_failure",
            "code_error", "blocked"} <= emitted  # the scan sees the code
    assert emitted - names.ERROR_KINDS == {""}  # "" is "no error"


def test_error_kinds_map_to_the_enum_and_unlisted_strings_to_unspecified() -> None:
    assert names.error_kind("timeout") == pb.ERROR_KIND_TIMEOUT
    assert names.error_kind("model_unavailable") == pb.ERROR_KIND_MODEL_UNAVAILABLE
    assert names.error_kind("") == names.error_kind("made_up") == pb.ERROR_KIND_UNSPECIFIED
    assert names.error_kind_name(pb.ERROR_KIND_MODEL_OUTPUT) == "model_output"


def test_the_mode_constants_and_type_are_the_proto_modes() -> None:
    assert set(get_args(names.ModeName)) == set(names.MODES)
    assert {names.DEEP_RESEARCH, names.GENERAL, names.PLAN} == set(names.MODES)
    assert names.MODES[names.DEFAULT_MODE] == pb.MODE_DEEP_RESEARCH  # MODE_UNSPECIFIED's meaning in the proto
    assert names.MODE_NAMES == {int(v): k for k, v in names.MODES.items()}
    assert names.mode_value("plan") == pb.MODE_PLAN
    assert names.status_name(pb.STATUS_UNSPECIFIED) == "unspecified"



def _spellings_outside_the_table() -> list[str]:
    """Places that spell a mode, or re-derive a name table, instead of reading toolfabric.v1.names."""
    modes = set(names.MODES)
    found: list[str] = []
    files = [*ROOT.glob("server/toolfabric_server/**/*.py"), *ROOT.glob("toolfabric/**/*.py")]
    for path in files:
        where = path.relative_to(ROOT)
        if "repository" in path.parts or path.name.endswith(("_pb2.py", "_pb2_grpc.py")) or where == Path(
                "toolfabric/v1/names.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            line = f"{where}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Constant) and node.value == "deep_research":
                found.append(f"{line} spells a mode")
            elif isinstance(node, ast.Compare) and "mode" in ast.unparse(node.left) and any(
                    isinstance(c, ast.Constant) and c.value in modes for c in node.comparators):
                found.append(f"{line} compares a mode with a literal")
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "Literal" and any(
                    isinstance(c, ast.Constant) and c.value in modes for c in ast.walk(node.slice)):
                found.append(f"{line} spells the modes as a Literal")
            elif isinstance(node, ast.DictComp) and ast.unparse(node).endswith(("MODES.items()}", "STATUSES.items()}")):
                found.append(f"{line} inverts a names table")
            elif isinstance(node, ast.Constant) and node.value in ("STATUS_", "MODE_"):
                found.append(f"{line} cuts an enum prefix")
    return found


def test_modes_and_statuses_are_spelled_only_in_the_names_table() -> None:
    assert _spellings_outside_the_table() == []
