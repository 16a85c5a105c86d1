"""How a model uses the tools, per trajectory and per run: what `eval compare` sets side by side.

Per trajectory (from a Run's events, stored in results.jsonl as `behaviour`):
- `steps`: model steps taken;
- `calls`: tool calls the model emitted that parsed (each is a `tool_call` event);
- `invalid_calls`: of those, refused before running because the tool is unknown or the arguments do not match
  its schema (observations `unknown_tool` / `invalid_argument`); a call refused for budget is still valid;
- `malformed`: steps whose output had tool-call markup that did not parse (the `model_output` error observation);
- `answered`: the trajectory reached `<answer>`.
Per run: valid calls per step, the share of trajectories that answered, schema validity (valid calls over every
attempt, malformed ones included), exact-match and judge accuracy, steps per question.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb

REFUSED_AS_INVALID = {"unknown_tool", "invalid_argument"}


def of_events(events: Iterable[pb.RunEvent], steps: int) -> dict[str, Any]:
    calls = invalid = malformed = 0
    answered = False
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "tool_call":
            calls += 1
        elif kind == "observation":
            obs = event.observation
            if obs.is_error and obs.name == "model_output" and not obs.call_id:
                malformed += 1
            elif obs.is_error and obs.error_kind in REFUSED_AS_INVALID:
                invalid += 1
        elif kind == "answer":
            answered = True
    return {"steps": steps, "calls": calls, "invalid_calls": invalid, "malformed": malformed, "answered": answered}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run-level figures; items without a `behaviour` record (refused requests) count as 0 steps, no answer."""
    n = len(records)
    b = [r.get("behaviour") or {} for r in records]
    steps = sum(x.get("steps", 0) for x in b)
    calls = sum(x.get("calls", 0) for x in b)
    valid = calls - sum(x.get("invalid_calls", 0) for x in b)
    attempts = calls + sum(x.get("malformed", 0) for x in b)
    judged = [r for r in records if isinstance(r.get("judge"), dict)]
    return {
        "n": n,
        "valid_calls_per_step": valid / steps if steps else 0.0,
        "answered": sum(1 for x in b if x.get("answered")) / n if n else 0.0,
        "schema_validity": valid / attempts if attempts else None,  # None: no call was ever attempted
        "exact": sum(r.get("scores", {}).get("exact", 0) for r in records) / n if n else 0.0,
        "judge": sum(1 for r in judged if r.get("correct")) / len(judged) if judged else None,
        "steps_per_question": steps / n if n else 0.0,
        "calls": calls, "valid_calls": valid, "attempts": attempts, "steps": steps,
    }


COLUMNS = (("valid calls/step", "valid_calls_per_step", "{:.2f}"), ("reached <answer>", "answered", "{:.0%}"),
           ("schema validity", "schema_validity", "{:.0%}"), ("exact", "exact", "{:.1%}"),
           ("judge", "judge", "{:.1%}"), ("steps/question", "steps_per_question", "{:.2f}"))


def table(runs: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of summarize() results, one row per run."""
    header = ["run", "n", *(c[0] for c in COLUMNS)]
    rows = [[name, str(s["n"]), *("—" if s[key] is None else fmt.format(s[key]) for _, key, fmt in COLUMNS)]
            for name, s in runs.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])
