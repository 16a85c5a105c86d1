"""The stepwise consistency check (the R1V4 curation lesson): does each step do what its thinking says?

Per step, a verdict:
- `consistent`: every tool the thinking names is called in that step (or it names none and calls none); a
  tool whose name is also a plain word (crop, code) counts as named only when used as a name (see `_names`);
- `unstated`: calls made that the thinking does not mention (allowed, reported);
- `inconsistent`: the thinking names a tool the step does not call.
When the model wrote a `<plan>` (R1V4's planner format) the plan's steps are checked against the executed
calls in order: each plan step is `executed` (its tool was called, in order) or `skipped`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from toolfabric_server.export.conversation import Conversation

_PLAN = re.compile(r"<plan>(.*?)</plan>", re.DOTALL)


@dataclass
class StepVerdict:
    step: int
    verdict: str  # consistent | unstated | inconsistent
    named: list[str]
    called: list[str]


@dataclass
class Report:
    trajectory_id: str
    steps: list[StepVerdict] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return all(s.verdict != "inconsistent" for s in self.steps) and all(
            p["verdict"] == "executed" for p in self.plan)

    def to_json(self) -> dict[str, Any]:
        return {"trajectory_id": self.trajectory_id, "consistent": self.consistent,
                "steps": [vars(s) for s in self.steps], "plan": self.plan}


def _tool_names(conv: Conversation) -> list[str]:
    names = set()
    for spec in conv.catalog.specs:
        if not spec.hidden:
            names.add(spec.name)
            names.update(spec.aliases)
    return sorted(names, key=len, reverse=True)


def _names(think: str, tool: str) -> bool:
    """Does the thinking name this tool? Identifiers (text_search) anywhere; plain words (crop, code) only when
    used as a tool's name — `crop`, "the crop tool", "call/use crop" — not as the verb they also are."""
    name = re.escape(tool)
    if "_" in tool:
        return re.search(rf"(?<![\w-]){name}(?![\w-])", think) is not None
    return re.search(rf"`{name}`|\b{name} tool\b|\b(?:call|use|run) (?:the )?{name}\b", think, re.I) is not None


def check(conv: Conversation) -> Report:
    tools = _tool_names(conv)
    report = Report(conv.trajectory.trajectory_id)
    for step in conv.steps:
        think = step.think
        named = sorted({t for t in tools if _names(think, t)})
        called = sorted({c.name for c in step.calls})
        if set(named) - set(called):
            verdict = "inconsistent"
        elif set(called) - set(named):
            verdict = "unstated"
        else:
            verdict = "consistent"
        report.steps.append(StepVerdict(step.number, verdict, named, called))
    report.plan = _plan_verdicts(conv)
    return report


def _plan_verdicts(conv: Conversation) -> list[dict[str, Any]]:
    for step in conv.steps:
        found = _PLAN.search(step.text)
        if not found:
            continue
        try:
            plan = json.loads(found.group(1))
        except json.JSONDecodeError:
            return [{"step": 0, "tool_name": "", "verdict": "unparseable plan"}]
        executed = [c.name for s in conv.steps if s.number > step.number for c in s.calls]
        out, position = [], 0
        for number, item in enumerate(plan if isinstance(plan, list) else [], start=1):
            tool = str(item.get("tool_name", "")) if isinstance(item, dict) else ""
            if tool in ("", "none"):
                out.append({"step": number, "tool_name": tool or "none", "verdict": "executed"})
                continue
            try:
                position = executed.index(tool, position) + 1
                out.append({"step": number, "tool_name": tool, "verdict": "executed"})
            except ValueError:
                out.append({"step": number, "tool_name": tool, "verdict": "skipped"})
        return out
    return []
