"""Curation filters, composable: each keeps or drops a trajectory and says why it dropped it.

The order given on the command line is the order applied; the report counts what each one dropped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.evals.scoring import extract_answer, normalize
from toolfabric_server.export.consistency import check
from toolfabric_server.export.conversation import Conversation

_SENTENCES = re.compile(r"(?<=[.!?])\s+")
# A filter returns None to keep the trajectory, or the reason it drops it.
Verdict = str | None
Check = Callable[[Conversation], Verdict]


@dataclass
class Filter:
    name: str
    check: Check
    dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def completed(conv: Conversation) -> Verdict:
    status = conv.trajectory.status
    return None if status == pb.STATUS_COMPLETED else f"status {pb.Status.Name(status)}"


def no_error_observations(conv: Conversation) -> Verdict:
    kinds = [o.error_kind or "error" for s in conv.steps for o in s.observations if o.is_error]
    return f"error observation ({kinds[0]})" if kinds else None


def no_repeated_calls(conv: Conversation) -> Verdict:
    seen: set[tuple[str, str]] = set()
    for step in conv.steps:
        for call in step.calls:
            key = (call.name, json.dumps(call.arguments, sort_keys=True))
            if key in seen:
                return f"repeated call {call.name}"
            seen.add(key)
    return None


def valid_calls(conv: Conversation) -> Verdict:
    cat = conv.catalog
    for step in conv.steps:
        for call in step.calls:
            spec = cat.get(call.name)
            if spec is None or spec.hidden:
                return f"unknown tool {call.name}"
            try:
                spec.arguments.model_validate(call.arguments)
            except ValidationError:
                return f"arguments of {call.name} do not match its schema"
    return None


def images_exist(available: Callable[[str], bool]) -> Check:
    """Every image name a call refers to is one the trajectory had by then, and every image's bytes exist."""
    name = re.compile(r"<(?:sub-)?image \d+>")

    def run(conv: Conversation) -> Verdict:
        known = {i.name for i in conv.images if i.step == 0}
        for step in conv.steps:
            for call in step.calls:
                for ref in name.findall(call.arguments_json):
                    if ref not in known:
                        return f"call names {ref}, which did not exist yet"
            known.update(i.name for o in step.observations for i in o.images)
        for image in conv.images:
            if not available(image.ref):
                return f"image {image.name} is missing"
        return None

    return run


def _readable(text: str) -> str:
    """Observation text as read: JSON observations flattened to their string values (no escapes)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)
        elif v is not None:
            out.append(str(v))

    walk(value)
    return " ".join(out)


def grounded(references: Callable[[Conversation], list[str]]) -> Check:
    """The answer's key string is in something the trajectory read: the eval reference the answer contains,
    or (with no reference) the answer's longest sentence."""

    def run(conv: Conversation) -> Verdict:
        read = normalize(" ".join(_readable(o.text) for s in conv.steps for o in s.observations if not o.is_error))
        answer = extract_answer(conv.answer).split(" (source:")[0]
        keys = [normalize(r) for r in references(conv) if normalize(r) and normalize(r) in normalize(answer)]
        if not keys:
            keys = [max((normalize(p) for p in _SENTENCES.split(answer)), key=len, default="")]
        if not keys[0]:
            return "empty answer"
        return None if any(f" {k} " in f" {read} " for k in keys) else "answer not found in any observation"

    return run


def bounds(min_steps: int, max_steps: int, min_calls: int, max_calls: int) -> Check:
    def run(conv: Conversation) -> Verdict:
        steps, calls = len(conv.steps), sum(len(s.calls) for s in conv.steps)
        if steps < min_steps or (max_steps and steps > max_steps):
            return f"{steps} steps outside [{min_steps}, {max_steps or '∞'}]"
        if calls < min_calls or (max_calls and calls > max_calls):
            return f"{calls} tool calls outside [{min_calls}, {max_calls or '∞'}]"
        return None

    return run


def dedupe_question() -> Check:
    seen: set[str] = set()

    def run(conv: Conversation) -> Verdict:
        key = normalize(conv.trajectory.question)
        if key in seen:
            return "duplicate question"
        seen.add(key)
        return None

    return run


def judge_correct(correct: Callable[[Conversation], bool | None]) -> Check:
    def run(conv: Conversation) -> Verdict:
        verdict = correct(conv)
        if verdict is None:
            return "no eval result for this trajectory"
        return None if verdict else "judged incorrect"

    return run


def consistent(conv: Conversation) -> Verdict:
    report = check(conv)
    bad = [s.step for s in report.steps if s.verdict == "inconsistent"]
    if bad:
        return f"thinking names a tool step {bad[0]} does not call"
    skipped = [p["step"] for p in report.plan if p["verdict"] != "executed"]
    return f"plan step {skipped[0]} not executed" if skipped else None


def apply(filters: list[Filter], conversations: list[Conversation]) -> list[Conversation]:
    kept = []
    for conv in conversations:
        for f in filters:
            reason = f.check(conv)
            if reason is not None:
                f.dropped += 1
                f.reasons[reason] += 1
                break
        else:
            kept.append(conv)
    return kept


def report(filters: list[Filter], total: int, kept: int) -> dict[str, Any]:
    return {"trajectories": total, "kept": kept,
            "filters": [{"filter": f.name, "dropped": f.dropped, "reasons": dict(f.reasons.most_common())}
                        for f in filters]}
