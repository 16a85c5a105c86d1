"""Qwen3-VL / Skywork-R1V4: the fabric's default dialect.

Two output syntaxes exist and both are accepted:
  JSON form:  <think>…</think><tool_call>{"name": …, "arguments": {…}}</tool_call>…  or <answer>…</answer>
  tag form:   <text_search>q</text_search> <image_search>img</image_search>
              <web_content>url</web_content> <code>…</code> <answer>…</answer>
Planner mode answers with <plan>[…]</plan>. Observations come back as <observation>…</observation>,
so that is where a step stops. Tool names and arguments are the catalog's own.
"""

from __future__ import annotations

import re
from typing import Any

from toolfabric_server.model.chat_template import ChatTemplate, Qwen3VLTemplate
from toolfabric_server.model.dialects.base import (
    NOT_READ,
    TOOL_CALL,
    ParsedStep,
    RawCall,
    TaggedDialect,
    finish,
    last_answer,
    parse_json_call,
    read_json,
    report_unclosed,
    split_think,
)

_PLAN = re.compile(r"<plan>(.*?)</plan>", re.DOTALL)
_TAG_CALLS = {
    "text_search": ("text_search", "queries"),
    "image_search": ("image_search", "image_paths"),
    "web_content": ("web_visit", "urls"),
    "code": ("code", "code"),
}
_TAG_FORM = re.compile(r"<(text_search|image_search|web_content|code)>(.*?)</\1>", re.DOTALL)
_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)
PLAN_TOOLS = {"image_search", "text_search", "web_visit", "none"}


def parse_step(text: str) -> ParsedStep:
    """One R1V4 model step; never raises."""
    step = ParsedStep()
    body = split_think(text, step)
    for i, match in enumerate(TOOL_CALL.finditer(body), start=1):
        call = parse_json_call(match.group(1), i, step.problems)
        if call:
            step.calls.append(call)
    for tag, content in _TAG_FORM.findall(body):
        name, arg = _TAG_CALLS[tag]
        content = content.strip()
        if name == "code":
            fenced = _FENCE.match(content)
            step.calls.append(RawCall(name, {"code": fenced.group(1) if fenced else content}))
        else:
            step.calls.append(RawCall(name, {arg: [content]}))
    answer = last_answer(body)
    if answer and answer.closed:  # a cut-off answer does not end the run: report_unclosed tells the model
        step.answer = answer.text
    plan = _PLAN.search(body)
    if plan:
        step.plan = _parse_plan(plan.group(1), step.problems)
    report_unclosed(body, ("tool_call", "answer", "plan", *_TAG_CALLS), step.problems)
    return finish(step)


def _parse_plan(raw: str, problems: list[str]) -> list[dict[str, Any]] | None:
    plan = read_json(raw, "the plan", problems)
    if plan is NOT_READ:
        return None
    if not isinstance(plan, list) or not 2 <= len(plan) <= 10:
        problems.append("the plan must be a JSON list of 2 to 10 steps")
        return None
    for i, item in enumerate(plan, start=1):
        # A non-string tool_name ({} or []) cannot be looked up in the set (found by fuzzing).
        tool = item.get("tool_name") if isinstance(item, dict) else None
        if not isinstance(tool, str) or tool not in PLAN_TOOLS:
            problems.append(f"plan step {i} needs a tool_name among {sorted(PLAN_TOOLS)}")
            return None
        if not isinstance(item.get("description", ""), str) or not isinstance(item.get("parameters", {}), dict):
            problems.append(f"plan step {i} needs a string description and a parameters object")
            return None
    if plan[-1].get("tool_name") != "none":
        problems.append('the last plan step must be a verification step with tool_name "none"')
        return None
    return plan


class Qwen3VLDialect(TaggedDialect):
    name = "qwen3vl"
    step_tags = ("think", "tool_call", "answer", "plan", *_TAG_CALLS)
    template: ChatTemplate = Qwen3VLTemplate()
    stop: tuple[str, ...] = ("<observation>",)
    observation_tags = ("<observation>", "</observation>")

    def parse(self, text: str) -> ParsedStep:
        return parse_step(text)
