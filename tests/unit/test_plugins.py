"""Plugin packages join the catalog through entry points; a bad one is left out with a clear reason."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from tests.support.plugin_dist import declared_plugins, on_path, write_dist
from tests.support.sample_plugins.echo import ShoutArgs
from toolfabric_server import catalog as catalog_module
from toolfabric_server.common.tools import Catalog, ToolPlugin, ToolSpec, check_service_name
from toolfabric_server.engine.prompting import system_message
from toolfabric_server.model.dialects import dialect_named
from toolfabric_server.tools.plugins import GROUP, load

DIALECT = dialect_named("qwen3vl")

SAMPLES = "tests.support.sample_plugins"


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, GROUP)


def test_a_working_plugin_loads_beside_broken_and_clashing_ones() -> None:
    # Entry points load in name order: of two plugins that want one name, the first keeps it.
    found = load([
        ep("echo", f"{SAMPLES}.echo:PLUGIN"),
        ep("broken", f"{SAMPLES}.broken:PLUGIN"),
        ep("clash", f"{SAMPLES}.clashing:BUILTIN_TOOL"),
        ep("second_shout", f"{SAMPLES}.clashing:OTHER_PLUGIN"),
        ep("clash3", f"{SAMPLES}.clashing:RESERVED"),
        ep("dict", f"{SAMPLES}.clashing:NOT_A_PLUGIN"),
        ep("missing", f"{SAMPLES}.echo:NO_SUCH_NAME"),
    ], catalog_module.builtin_specs())
    assert [p.service for p in found.loaded] == ["echo"]
    problems = {p.entry_point: p.message for p in found.problems}
    assert "No module named 'a_module_that_is_not_installed'" in problems["broken"]
    assert problems["clash"] == "tool name 'crop' already belongs to the built-in vision service"
    assert problems["second_shout"] == "tool name 'shout' already belongs to plugin 'echo'"
    assert problems["clash3"] == "tool name 'ping' already belongs to the fabric itself"
    assert problems["dict"] == f"{SAMPLES}.clashing:NOT_A_PLUGIN is a dict, not a ToolPlugin"
    assert "NO_SUCH_NAME" in problems["missing"]
    # What is left builds a catalog (no duplicate names) with the plugin's service.
    cat = Catalog([*catalog_module.builtin_specs(), *found.specs])
    assert cat.services() == ["vision", "search", "fetch", "echo"]


def test_plugin_tools_reach_the_system_prompt_only_in_the_modes_they_name() -> None:
    found = load([ep("echo", f"{SAMPLES}.echo:PLUGIN")], catalog_module.builtin_specs())
    cat = Catalog([*catalog_module.builtin_specs(), *found.specs])
    assert '"name": "shout"' in system_message("general", cat.visible("general"), DIALECT).parts[0]
    assert '"name": "shout"' not in system_message("deep_research", cat.visible("deep_research"), DIALECT).parts[0]


@pytest.mark.parametrize("name", ["", "OCR", "1ocr", "ocr-service", "a" * 32, "x y", "../etc"])
def test_service_names_that_cannot_be_a_queue_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not valid"):
        check_service_name(name)


def test_a_plugin_cannot_take_a_builtin_service_or_mislabel_its_tools() -> None:
    with pytest.raises(ValueError, match="belongs to a built-in service"):
        ToolPlugin("vision", (), "m:H")
    with pytest.raises(ValueError, match="names service 'other'"):
        ToolPlugin("mine", (ToolSpec("t", "other", "d", ShoutArgs),), "m:H")
    with pytest.raises(ValueError, match="is not valid"):
        ToolSpec("t", "Bad Name", "d", ShoutArgs)


def test_the_ocr_entry_point_this_project_declares_loads_the_ocr_tool(tmp_path: Path) -> None:
    assert declared_plugins() == {"ocr": "toolfabric_server.tools.ocr.plugin:PLUGIN"}
    with on_path(write_dist(tmp_path, "toolfabric_declared", declared_plugins())):
        assert catalog_module.plugins().problems == ()
        ocr = catalog_module.catalog().get("read_text")
        assert ocr is not None and ocr.name == "ocr" and ocr.service == "ocr"
        assert "ocr" in catalog_module.catalog().services()
        assert "image" in ocr.json_schema()["properties"]
