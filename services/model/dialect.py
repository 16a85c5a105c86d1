"""Parsing one model step in the R1V4 dialect, never raising on malformed output.

Two syntaxes exist and both are accepted:
  JSON form:  <think>…</think><tool_call>{"name": …, "arguments": {…}}</tool_call>…  or <answer>…</answer>
  tag form:   <text_search>q</text_search> <image_search>img</image_search>
              <web_content>url</web_content> <code>…</code> <answer>…</answer>
Planner mode answers with <plan>[…]</plan>. What cannot be understood is reported in
`problems`, which the loop turns into an error observation the model can react to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
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
# Valid JSON that Python's reader still refuses (found by fuzzing; degenerate output such as
# "[[[[…" is a common way for a model to fail): nesting past the recursion limit, and integers
# longer than int's 4300-digit conversion limit (ValueError).
_UNREADABLE = (RecursionError, ValueError)


def _unreadable(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else "a number too long to read"


@dataclass
class RawCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedStep:
    think: str = ""
    calls: list[RawCall] = field(default_factory=list)
    answer: str | None = None
    plan: list[dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)


def parse_step(text: str) -> ParsedStep:
    step = ParsedStep()
    think = _THINK.search(text)
    if think:
        step.think = think.group(1).strip()
    # Tool calls and answers inside <think> are the model musing, not acting.
    body = text[think.end():] if think else text

    for i, match in enumerate(_TOOL_CALL.finditer(body), start=1):
        call = _parse_json_call(match.group(1), i, step.problems)
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

    answer = _ANSWER.search(body)
    if answer:
        step.answer = answer.group(1).strip()
    plan = _PLAN.search(body)
    if plan:
        step.plan = _parse_plan(plan.group(1), step.problems)

    _report_unclosed(body, step.problems)
    if step.answer is not None and step.calls:
        step.problems.append("the step both calls tools and answers; the tool calls were run and the answer ignored")
        step.answer = None
    if not step.calls and step.answer is None and step.plan is None and not step.problems:
        step.problems.append(
            "the step has neither a tool call nor an answer: call a tool with "
            '<tool_call>{"name": …, "arguments": {…}}</tool_call> or finish with <answer>…</answer>'
        )
    return step


def _parse_json_call(raw: str, index: int, problems: list[str]) -> RawCall | None:
    try:
        obj = json.loads(raw.strip())
    except json.JSONDecodeError as exc:
        problems.append(f"tool call {index} is not valid JSON ({exc.msg} at position {exc.pos}): {raw.strip()[:200]}")
        return None
    except _UNREADABLE as exc:
        problems.append(f"tool call {index} cannot be read as JSON ({_unreadable(exc)}): {raw.strip()[:200]}")
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        problems.append(f'tool call {index} must be an object with a string "name" and an "arguments" object')
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except (json.JSONDecodeError, *_UNREADABLE):
            pass
    if not isinstance(args, dict):
        problems.append(f'tool call {index} ({obj["name"]}): "arguments" must be a JSON object')
        return None
    return RawCall(obj["name"], args)


def _parse_plan(raw: str, problems: list[str]) -> list[dict[str, Any]] | None:
    try:
        plan = json.loads(raw.strip())
    except json.JSONDecodeError as exc:
        problems.append(f"the plan is not valid JSON ({exc.msg} at position {exc.pos})")
        return None
    except _UNREADABLE as exc:
        problems.append(f"the plan cannot be read as JSON ({_unreadable(exc)})")
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


def _report_unclosed(body: str, problems: list[str]) -> None:
    for tag in ("tool_call", "answer", "plan", *_TAG_CALLS):
        opened, closed = body.count(f"<{tag}>"), body.count(f"</{tag}>")
        if opened > closed:
            problems.append(f"<{tag}> was opened but never closed with </{tag}>")
