"""A run's results on disk, and the statistics over them.

    <runs>/<run>/run.json         what was run: dataset, target, sampling, budgets, judge
                 results.jsonl    one line per item, appended as each finishes (resume reads it)
                 judge_cache.jsonl  every judge call (replayable)
                 summary.json     accuracy ± Wald 95 %, per category, tool use, failures by kind
                 report.html      `toolfabric eval report`
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from toolfabric_server.evals.errors import RunError

# Failures worth another try on resume (the fabric could not be reached); the rest are results.
RETRYABLE = {"rpc_error"}


def load_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest record per item id."""
    path = run_dir / "results.jsonl"
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # The last line of an interrupted run can be cut short: the item simply runs again.
            continue
        if "id" not in record:
            raise RunError(f"{path}:{number}: a result without an id")
        out[str(record["id"])] = record
    return out


def done_ids(results: dict[str, dict[str, Any]]) -> set[str]:
    return {i for i, r in results.items() if r.get("failure") not in RETRYABLE}


def wald(correct: int, n: int) -> tuple[float, float]:
    """Accuracy and the half-width of its Wald 95 % interval."""
    if n == 0:
        return 0.0, 0.0
    p = correct / n
    return p, 1.96 * math.sqrt(p * (1 - p) / n)


def summarize(records: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    n = len(records)
    correct = sum(1 for r in records if r.get("correct"))
    accuracy, half = wald(correct, n)
    categories: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        categories[r.get("category") or "(none)"].append(r)
    per_category = {}
    for name, rows in sorted(categories.items()):
        acc, ci = wald(sum(1 for r in rows if r.get("correct")), len(rows))
        per_category[name] = {"n": len(rows), "accuracy": acc, "ci95": ci}
    calls = [r.get("tool_calls", 0) for r in records]
    per_tool: Counter[str] = Counter()
    for r in records:
        per_tool.update(r.get("tool_calls_by_name", {}))
    seconds = [r.get("seconds", 0.0) for r in records]
    judged = [r for r in records if r.get("judge") is not None]
    return {
        "n": n, "metric": metric, "correct": correct, "accuracy": accuracy, "ci95": half,
        "exact": _mean(r.get("scores", {}).get("exact", 0) for r in records),
        "sub_exact": _mean(r.get("scores", {}).get("sub_exact", 0) for r in records),
        "f1": _mean(r.get("scores", {}).get("f1", 0.0) for r in records),
        "per_category": per_category,
        "tool_use": {"mean_calls": _mean(calls), "max_calls": max(calls, default=0),
                     "questions_with_tools": sum(1 for c in calls if c), "per_tool": dict(sorted(per_tool.items()))},
        "seconds": {"mean": _mean(seconds), "p50": statistics.median(seconds) if seconds else 0.0,
                    "max": max(seconds, default=0.0)},
        "cost_units": sum(r.get("cost_units", 0.0) for r in records),
        "failures": dict(sorted(Counter(r["failure"] for r in records if r.get("failure")).items())),
        "judge": {"judged": len(judged),
                  "unparseable": sum(1 for r in judged if r["judge"].get("verdict") == "unparseable"),
                  "errors": sum(1 for r in judged if r["judge"].get("verdict") == "error"),
                  "cached": sum(1 for r in judged if r["judge"].get("cached"))} if judged else None,
    }


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def summary_text(summary: dict[str, Any]) -> str:
    lines = [f"accuracy ({summary['metric']}): {summary['accuracy']:.1%} ± {summary['ci95']:.1%} "
             f"(Wald 95 %, {summary['correct']}/{summary['n']})",
             f"exact {summary['exact']:.1%}  sub-exact {summary['sub_exact']:.1%}  token F1 {summary['f1']:.3f}"]
    for name, c in summary["per_category"].items():
        lines.append(f"  {name}: {c['accuracy']:.1%} ± {c['ci95']:.1%} (n={c['n']})")
    tools = summary["tool_use"]
    lines.append(f"tool calls per question: mean {tools['mean_calls']:.1f}, max {tools['max_calls']}; "
                 + ", ".join(f"{k} {v}" for k, v in tools["per_tool"].items()))
    lines.append(f"seconds per question: p50 {summary['seconds']['p50']:.2f}, mean {summary['seconds']['mean']:.2f}")
    if summary["failures"]:
        lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in summary["failures"].items()))
    if summary["judge"]:
        j = summary["judge"]
        lines.append(f"judge: {j['judged']} graded, {j['unparseable']} unparseable replies, {j['errors']} errors, "
                     f"{j['cached']} from the cache")
    return "\n".join(lines)


def mcnemar(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Paired comparison over the items both runs have: difference in accuracy and McNemar's exact test."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise RunError("the two runs have no item in common")
    only_a = sum(1 for i in shared if a[i].get("correct") and not b[i].get("correct"))
    only_b = sum(1 for i in shared if b[i].get("correct") and not a[i].get("correct"))
    n = len(shared)
    acc_a = sum(1 for i in shared if a[i].get("correct")) / n
    acc_b = sum(1 for i in shared if b[i].get("correct")) / n
    discordant = only_a + only_b
    # Exact two-sided binomial test on the discordant pairs (McNemar's test without the normal approximation).
    k = min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(discordant, j) for j in range(k + 1)) / 2 ** discordant) if discordant else 1.0
    # Wald interval of the paired difference.
    diff = acc_b - acc_a
    var = ((only_a + only_b) / n - diff ** 2) / n
    return {"n": n, "accuracy_a": acc_a, "accuracy_b": acc_b, "difference": diff,
            "ci95": 1.96 * math.sqrt(max(var, 0.0)), "a_only_correct": only_a, "b_only_correct": only_b,
            "p_value": p, "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a))}
