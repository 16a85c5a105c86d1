"""Model output: one step's text through the dialect parser, both syntaxes and plan mode.

Promises checked: parsing never raises; every call it reports either names no visible tool (the
loop answers `unknown_tool`) or its arguments pass or fail the tool's schema with a described
ValidationError (never another exception), and can be echoed as JSON in the ToolCall event; a step
with no call, no answer and no plan carries a problem for the model; a plan is 2 to 10 known steps
ending in a verification step.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from tests.fuzz.adapters import parse_model_output
from toolfabric_server.catalog import catalog
from toolfabric_server.common.tools import describe_validation_error
from toolfabric_server.model.dialect import PLAN_TOOLS

INSTRUMENT = ("toolfabric_server.model", "tests.fuzz.adapters")
CATALOG = catalog()


def fuzz_one(data: bytes) -> None:
    step = parse_model_output(data.decode("utf-8", errors="replace"))
    assert isinstance(step.think, str) and all(isinstance(p, str) and p for p in step.problems)
    if not step.calls and step.answer is None and step.plan is None:
        assert step.problems, "a step with nothing to do must tell the model why"
    if step.answer is not None:
        assert not step.calls, "a step both answers and calls tools"
    if step.plan is not None:
        assert 2 <= len(step.plan) <= 10 and step.plan[-1]["tool_name"] == "none"
        assert all(item["tool_name"] in PLAN_TOOLS for item in step.plan)
        json.dumps(step.plan, ensure_ascii=False)  # the plan is the run's answer, sent as JSON
    for call in step.calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
        json.dumps(call.arguments, ensure_ascii=False)  # the loop echoes them in the ToolCall event
        tool = CATALOG.get(call.name)
        if tool is None or tool.hidden:
            continue  # the loop answers unknown_tool
        try:
            tool.arguments.model_validate(call.arguments).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            assert describe_validation_error(call.name, exc)
