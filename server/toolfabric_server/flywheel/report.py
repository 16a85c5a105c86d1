"""The flywheel's HTML report: one self-contained file (plots inlined as PNG) from flywheel.json."""

from __future__ import annotations

import html
import json
from typing import Any

from toolfabric_server.evals.behaviour import COLUMNS
from toolfabric_server.evals.report import _png

RUNS = ("baseline", "untrained", "trained")


def plots(summary: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    losses = summary["train_log"]["losses"]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([e["step"] for e in losses], [e["loss"] for e in losses], color="#4878a8")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title("TRL SFTTrainer on the curated trajectories")
    out["training loss"] = _png(fig)
    plt.close(fig)

    tool_use = list(summary["compare"]["tool_use"].values())
    metrics = [("valid calls/step", "valid_calls_per_step"), ("reached <answer>", "answered"),
               ("schema validity", "schema_validity"), ("exact", "exact"), ("judge", "judge")]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.27
    for i, (name, run) in enumerate(zip(RUNS, tool_use, strict=True)):
        values = [run[key] or 0.0 for _, key in metrics]
        ax.bar([x + (i - 1) * width for x in range(len(metrics))], values, width, label=name,
               color=("#999999", "#c4703e", "#4878a8")[i])
    ax.set_xticks(range(len(metrics)), [m for m, _ in metrics], rotation=15)
    ax.set_title("held-out questions: baseline vs untrained vs trained")
    ax.legend()
    out["held-out comparison"] = _png(fig)
    plt.close(fig)

    filters = summary["curation"]["filters"]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.barh([f["filter"] for f in filters][::-1], [f["dropped"] for f in filters][::-1], color="#6a9f58")
    ax.set_xlabel("trajectories dropped")
    ax.set_title(f"curation: kept {summary['curation']['kept']} of {summary['curation']['trajectories']}")
    out["what each filter dropped"] = _png(fig)
    plt.close(fig)
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def verdict(summary: dict[str, Any]) -> str:
    """Where the trained model stands, in words from the figures: tool use first, then accuracy."""
    base, untrained, trained = summary["compare"]["tool_use"].values()
    tool_use = (f"The trained model makes {trained['valid_calls_per_step']:.2f} valid tool calls per step, the "
                f"untrained one {untrained['valid_calls_per_step']:.2f} (the baseline it learned from: "
                f"{base['valid_calls_per_step']:.2f}); schema validity {_pct(trained['schema_validity'])}.")
    accuracy = (f"Accuracy on the held-out topics: it reaches an answer in {_pct(trained['answered'])} of the "
                f"questions and is judge-correct in {_pct(trained['judge'])}, exact {_pct(trained['exact'])} "
                f"(baseline: judge {_pct(base['judge'])}, exact {_pct(base['exact'])}).")
    if trained["valid_calls_per_step"] <= untrained["valid_calls_per_step"]:
        return f"{tool_use} {accuracy} It has not learned the tool-call format yet (train longer, or on more rows)."
    gap = ("" if (trained["judge"] or 0) >= (base["judge"] or 0) else " It has learned the tool-call format from "
           "the curated trajectories; answering correctly on unseen topics is a long way further, at this scale.")
    return tool_use + " " + accuracy + gap


def render(summary: dict[str, Any]) -> str:
    figures = "".join(f"<figure><img alt='{html.escape(n)}' src='{src}'><figcaption>{html.escape(n)}</figcaption>"
                      f"</figure>" for n, src in plots(summary).items())
    tool_use = summary["compare"]["tool_use"]
    head = "".join(f"<th>{html.escape(c[0])}</th>" for c in COLUMNS)
    rows = "".join(
        f"<tr><td>{name}</td><td>{s['n']}</td>"
        + "".join(f"<td>{'—' if s[key] is None else fmt.format(s[key])}</td>" for _, key, fmt in COLUMNS) + "</tr>"
        for name, s in zip(RUNS, tool_use.values(), strict=True))
    filters = "".join(f"<tr><td>{html.escape(f['filter'])}</td><td>{f['dropped']}</td><td>"
                      f"{html.escape('; '.join(f'{k} ({v})' for k, v in f['reasons'].items()))}</td></tr>"
                      for f in summary["curation"]["filters"])
    log, check = summary["train_log"], summary["tokencheck"]
    first, last = log["losses"][0]["loss"], log["losses"][-1]["loss"]
    timings = ", ".join(f"{k} {v:.0f}s" for k, v in summary["timings"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>flywheel</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border-bottom:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}} figure{{display:inline-block;
margin:0 1em}} pre{{background:#f6f6f6;padding:1em;font-size:12px}}</style></head><body>
<h1>The data flywheel, end to end</h1>
<p>{summary['questions']['train']} training and {summary['questions']['heldout']} held-out questions over the demo
corpus (split by topic) → the baseline policy's trajectories → curated with <code>toolfabric export</code> →
TRL SFTTrainer on the tiny Qwen3-VL model ({log['steps']} steps, {log['rows']} trajectories, loss {first:.3f} →
{last:.3f} in {log['seconds']:.0f}s on CPU) → served by the transformers engine behind Triton and evaluated on the
held-out questions. Judge: {'the scripted judge model (reference containment)' if summary['judged'] else
'none (accuracy is sub-exact match)'}. Times: {html.escape(timings)}.</p>
<h2>Held-out: how each model used the tools</h2><p><b>{html.escape(verdict(summary))}</b></p>
<table><tr><th>run</th><th>n</th>{head}</tr>{rows}</table>
<pre>{html.escape(summary['compare_table'])}</pre>
{figures}
<h2>Curation (toolfabric export filters, in order)</h2>
<table><tr><th>filter</th><th>dropped</th><th>why</th></tr>{filters}</table>
<h2>RL export vs TRL's tokenisation</h2>
<p>{check['samples']} trajectories of the trained model: token ids equal in {check['ids_equal']}, loss masks equal
(besides TRL's final newline) in {check['masks_equal']}. Differences by kind:
<code>{html.escape(json.dumps(check['differences']))}</code> (docs/flywheel.md says whose defect each is).</p>
<h2>Settings</h2><pre>{html.escape(json.dumps(summary['settings'], indent=1))}</pre>
</body></html>"""
