"""A working plugin: service `echo` with one tool that repeats its text, counting the images it saw."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from toolfabric_server.common.tools import ToolContext, ToolPlugin, ToolResult, ToolSpec


class ShoutArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=100)


def shout(args: ShoutArgs, ctx: ToolContext) -> ToolResult:
    if args.text == "crash":
        raise RuntimeError("the plugin's own bug")
    return ToolResult(text=f"{args.text.upper()}! ({len(ctx.images)} images)")


TOOLS = (ToolSpec("shout", "echo", "Repeat the text loudly.", ShoutArgs, modes=frozenset({"general"})),)
PLUGIN = ToolPlugin("echo", TOOLS, "tests.support.sample_plugins.echo:HANDLERS")
HANDLERS = {"shout": shout}
