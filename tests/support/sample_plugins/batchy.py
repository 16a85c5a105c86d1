"""A plugin for batched calls (common/batches.py): service `batchy`, whose one tool naps, fails or kills its pool
process on request and notes every run of a call in a file (TOOLFABRIC_TEST_RUNS_FILE), so a test can count them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from toolfabric_server.common.tools import ToolContext, ToolPlugin, ToolResult, ToolSpec


class NapArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=0.0, ge=0, le=60)
    # "raise": the handler raises; "exit once": the pool process exits the first time this call runs.
    then: str = ""


def nap(args: NapArgs, ctx: ToolContext) -> ToolResult:
    runs = Path(os.environ["TOOLFABRIC_TEST_RUNS_FILE"])
    with runs.open("a") as f:
        f.write(ctx.call_id + "\n")
    time.sleep(args.seconds)
    if args.then == "raise":
        raise RuntimeError("asked to fail")
    if args.then == "exit once" and runs.read_text().splitlines().count(ctx.call_id) == 1:
        os._exit(1)
    return ToolResult(text=f"{ctx.call_id} done in {os.getpid()}")


TOOLS = (ToolSpec("nap", "batchy", "Nap, then answer.", NapArgs, modes=frozenset({"general"})),)
PLUGIN = ToolPlugin("batchy", TOOLS, "tests.support.sample_plugins.batchy:HANDLERS")
HANDLERS = {"nap": nap}
