"""A plugin service whose one tool does nothing: what bench/rollout.py measures the fabric's overhead with."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from toolfabric_server.common.tools import ToolContext, ToolPlugin, ToolResult, ToolSpec


class NoopArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


def noop(args: NoopArgs, ctx: ToolContext) -> ToolResult:
    return ToolResult(text="ok")


PLUGIN = ToolPlugin("noop", (ToolSpec("noop", "noop", "Does nothing.", NoopArgs),), "bench.noop_plugin:HANDLERS")
HANDLERS = {"noop": noop}
