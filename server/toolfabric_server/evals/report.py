"""`toolfabric eval report RUN`: one self-contained HTML file (plots inlined as PNG, no external links).

Each item links to its trajectory, rendered in the same file from the store (through the SDK) when the
gateway is reachable; otherwise the link names the `toolfabric trajectory ID` command.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.evals import trajectory_html
from toolfabric_server.evals.results import load_results, summarize, summary_text


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def plots(records: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    cats = summary["per_category"]
    fig, ax = plt.subplots(figsize=(6, 3))
    # The Wald interval clipped to [0, 100] %.
    low = [min(c["ci95"], c["accuracy"]) * 100 for c in cats.values()]
    high = [min(c["ci95"], 1 - c["accuracy"]) * 100 for c in cats.values()]
    ax.bar(list(cats), [c["accuracy"] * 100 for c in cats.values()], yerr=[low, high], capsize=4, color="#4878a8")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"accuracy by category ({summary['metric']}, Wald 95 %)")
    ax.tick_params(axis="x", rotation=30)
    out["accuracy by category"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    calls = [r.get("tool_calls", 0) for r in records]
    ax.hist(calls, bins=range(0, max(calls, default=0) + 2), color="#6a9f58", align="left", rwidth=0.85)
    ax.set_xlabel("tool calls")
    ax.set_ylabel("questions")
    ax.set_title("tool calls per question")
    out["tool calls per question"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([r.get("seconds", 0.0) for r in records], bins=20, color="#c4703e")
    ax.set_xlabel("seconds per question (wall)")
    ax.set_ylabel("questions")
    ax.set_title("latency")
    out["latency"] = _png(fig)
    plt.close(fig)
    return out


def render(run_dir: Path, trajectories: dict[str, pb.Trajectory] | None = None,
           images: dict[str, str] | None = None) -> str:
    """The report; `images` maps blob references to data URLs (the trajectories' images, shown inline)."""
    results = load_results(run_dir)
    manifest = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    metric = manifest.get("metric", "sub_exact")
    records = list(results.values())
    summary = summarize(records, metric)
    trajectories = trajectories or {}
    figures = "".join(f"<figure><img alt='{html.escape(name)}' src='{src}'><figcaption>{html.escape(name)}"
                      f"</figcaption></figure>" for name, src in plots(records, summary).items())
    items = []
    for r in records:
        tid = r.get("trajectory_id", "")
        link = (f"<a href='#t-{html.escape(tid)}'>{html.escape(tid[:8])}</a>" if tid in trajectories
                else f"<code title='toolfabric trajectory {html.escape(tid)}'>{html.escape(tid[:8])}</code>")
        items.append(
            f"<tr class='{'ok' if r.get('correct') else 'bad'}'><td>{html.escape(r['id'])}</td>"
            f"<td>{html.escape(r.get('category', ''))}</td><td>{'✓' if r.get('correct') else '✗'}</td>"
            f"<td>{html.escape(r.get('prediction', '')[:200])}</td>"
            f"<td>{html.escape('; '.join(r.get('answers', [])))}</td>"
            f"<td>{r.get('tool_calls', 0)}</td><td>{r.get('seconds', 0):.2f}</td>"
            f"<td>{html.escape(r.get('failure') or '')}</td><td>{link}</td></tr>")
    sections = "".join(f"<section id='t-{html.escape(tid)}'><h3>trajectory {html.escape(tid)}</h3>"
                       f"<p>{html.escape(t.question)}</p>{trajectory_html.render(t, images or {})}</section>"
                       for tid, t in trajectories.items())
    provenance = ""
    if manifest.get("bundle"):
        provenance += f"<p>answered offline from bundle <code>{html.escape(str(manifest['bundle']))}</code></p>"
    frozen = manifest.get("frozen")
    if frozen:
        provenance += (f"<p>frozen: bundle <code>{html.escape(str(frozen.get('hash')))}</code> "
                       f"({frozen.get('entries')} provider responses) at {html.escape(str(frozen.get('bundle')))}</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>eval {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:3px 6px;font-size:13px;text-align:left;vertical-align:top}}
tr.bad td:nth-child(3){{color:#b00}} tr.ok td:nth-child(3){{color:#070}} figure{{display:inline-block;margin:0 1em}}
.ev{{font-size:13px;margin:4px 0;white-space:pre-wrap}} .think{{color:#777;font-style:italic}}
.call{{color:#036}} .obs{{color:#603}} .err{{color:#b00}} .final{{border:1px solid #6a6;padding:4px}}
.ev pre{{margin:2px 0 2px 1.5em;padding:4px;background:#f6f6f6;white-space:pre-wrap;font-size:12px}}
figure.img{{margin:4px}} figure.img img{{max-width:320px;max-height:240px}} figure.img figcaption{{font-size:11px}}
pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>eval {html.escape(run_dir.name)}</h1><pre>{html.escape(summary_text(summary))}</pre>
<p>dataset {html.escape(str(manifest.get('dataset', '')))} · target {html.escape(str(manifest.get('target', '')))}
· judge {html.escape(str(manifest.get('judge')))} · options {html.escape(json.dumps(manifest.get('options', {})))}</p>
{provenance}{figures}
<h2>items</h2><table><tr><th>id</th><th>category</th><th>correct</th><th>answer</th><th>references</th>
<th>tool calls</th><th>seconds</th><th>failure</th><th>trajectory</th></tr>{''.join(items)}</table>
<h2>trajectories</h2>{sections or '<p>(the gateway was not reachable: no trajectories embedded)</p>'}
</body></html>"""
