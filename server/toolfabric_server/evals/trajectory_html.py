"""A trajectory as HTML that reads like the CLI's stream (toolfabric/cli/render.py): the thinking, each tool
call once, observations as readable text, images inline, the answer.

Tool-call markup (CHANNEL_UNSPECIFIED text) is not shown: the call event that follows it says the same.
Observations are what the model read, usually JSON: shown as indented `key: value` lines, not escaped JSON.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.model.dialects import DEFAULT_DIALECT

# The channel tags the stream carries (the dialect's), dropped from the text shown.
_TAGS = re.compile(f"</?({DEFAULT_DIALECT.think_tag}|{DEFAULT_DIALECT.answer_tag})>")
_OBSERVATION_CHARS = 4000


def readable(value: Any, indent: int = 0) -> str:
    """JSON as text a person reads: one `key: value` per line, lists as dashes, strings unquoted."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{readable(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            body = readable(item, indent + 1).lstrip() if isinstance(item, dict | list) else _scalar(item)
            lines.append(f"{pad}- {body}")
        return "\n".join(lines) or f"{pad}(none)"
    return pad + _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or value == [] or value == {}:
        return "(none)"
    return json.dumps(value, ensure_ascii=False)


def observation_text(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    shown = readable(value) if isinstance(value, dict | list) else text
    if len(shown) > _OBSERVATION_CHARS:
        shown = shown[:_OBSERVATION_CHARS] + f" … [{len(shown)} characters]"
    return shown


def _images(refs: Any, images: dict[str, str]) -> str:
    out = []
    for ref in refs:
        src = images.get(ref.blob)
        caption = html.escape(f"{ref.name} {ref.width}x{ref.height} ({ref.origin})")
        out.append(f"<figure class='img'><img alt='{caption}' src='{src}'><figcaption>{caption}</figcaption></figure>"
                   if src else f"<span class='img'>{caption}</span>")
    return f"<div>{''.join(out)}</div>" if out else ""


def render(trajectory: pb.Trajectory, images: dict[str, str]) -> str:
    """`images`: blob → data URL of the images fetched with the trajectory (missing ones are named only)."""
    rows: list[str] = []
    # The answer is its own event; its streamed text is shown only when that event never came (cut short).
    answered = any(e.WhichOneof("event") == "answer" for e in trajectory.events)
    stream: list[Any] = [None, []]  # the channel being streamed and its text pieces

    def flush() -> None:
        channel, parts = stream
        text = "".join(parts).strip()
        if channel is not None and text:
            label, css = ("thinking", "think") if channel == pb.CHANNEL_THINK else ("answer", "answer")
            rows.append(f"<div class='ev {css}'><b>{label}</b> {html.escape(text)}</div>")
        stream[0], stream[1] = None, []

    for event in trajectory.events:
        kind = event.WhichOneof("event")
        if kind == "text":
            channel = event.text.channel
            if channel == pb.CHANNEL_UNSPECIFIED or (channel == pb.CHANNEL_ANSWER and answered):
                continue
            if channel != stream[0]:
                flush()
                stream[0] = channel
            stream[1].append(_TAGS.sub("", event.text.text))
            continue
        flush()
        if kind == "started":
            rows.append(_images(event.started.images, images))
        elif kind == "tool_call":
            call = event.tool_call
            try:
                args = json.loads(call.arguments_json or "{}")
            except ValueError:
                args = call.arguments_json
            code = args.get("code") if call.name == "code" and isinstance(args, dict) else None
            shown = code if isinstance(code, str) else json.dumps(args, ensure_ascii=False)
            rows.append(f"<div class='ev call'><b>→ {html.escape(call.name)}</b>"
                        f"<pre>{html.escape(shown)}</pre></div>")
        elif kind == "observation":
            o = event.observation
            head = f"← {o.name or 'observation'}" + (f" ({o.duration_s * 1000:.0f} ms)" if o.duration_s else "")
            if o.is_error:
                head += f" — error ({o.error_kind})"
            rows.append(f"<div class='ev obs{' err' if o.is_error else ''}'><b>{html.escape(head)}</b>"
                        f"<pre>{html.escape(observation_text(o.text))}</pre>{_images(o.images, images)}</div>")
        elif kind == "answer":
            a = event.answer
            body = json.dumps(json.loads(a.plan_json), indent=2, ensure_ascii=False) if a.plan_json else a.text
            rows.append(f"<div class='ev final'><b>answer</b> {html.escape(body)}</div>")
        elif kind == "finished":
            f = event.finished
            rows.append(f"<div class='ev done'>{pb.Status.Name(f.status)}: {html.escape(f.reason)}</div>")
    flush()
    return "\n".join(r for r in rows if r)


def image_blobs(trajectory: pb.Trajectory) -> list[str]:
    """Every image the trajectory shows (its inputs and the tools' outputs), in order, once."""
    blobs: list[str] = []
    for event in trajectory.events:
        kind = event.WhichOneof("event")
        refs = (event.started.images if kind == "started" else event.observation.images if kind == "observation"
                else [])
        blobs.extend(r.blob for r in refs if r.blob and r.blob not in blobs)
    return blobs
