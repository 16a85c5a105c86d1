"""Showing a trajectory in the terminal as it streams, and saving its images named by step."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from toolfabric.v1 import fabric_pb2 as pb

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
_TAGS = re.compile(r"</?(think|answer)>")
_PLAN = re.compile(r"<plan>(.*?)</plan>", re.DOTALL)


class TrajectoryPrinter:
    """Feed it RunEvents; thinking streams dimmed, tools and observations are marked, images saved."""

    def __init__(self, console: Console, fetch_image: Callable[[str], bytes] | None, out_dir: Path | None,
                 observation_chars: int = 700) -> None:
        self.console, self._fetch, self._out = console, fetch_image, out_dir
        self._chars = observation_chars
        self._streaming: int | None = None
        self._markup = ""  # this step's text outside think and answer, where a planner writes its plan
        self._plan_shown = False
        self._trajectory = ""
        self.trace_id = ""
        self.saved: list[Path] = []

    def __call__(self, event: pb.RunEvent) -> None:
        kind = event.WhichOneof("event")
        if kind != "text":
            self._end_stream()
            self._markup = ""
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:  # an event kind newer than this client is skipped
            handler(event)

    def _end_stream(self) -> None:
        if self._streaming is not None:
            self.console.print()
            self._streaming = None

    def _on_started(self, event: pb.RunEvent) -> None:
        s = event.started
        self._trajectory, self.trace_id = event.trajectory_id, s.trace_id
        self.console.rule(f"[bold]trajectory {event.trajectory_id}")
        # Ids are printed unwrapped so they can be copied whole.
        self.console.print(f"trace {s.trace_id or '(tracing off)'}  mode {pb.Mode.Name(s.mode)}  model {s.model}",
                           style="dim", soft_wrap=True)
        self.console.print(f"budgets: {s.budgets.max_steps} steps, {s.budgets.max_tool_calls} tool calls, "
                           f"{s.budgets.deadline_s:g}s", style="dim", soft_wrap=True)
        for image in s.images:
            self._save(image)

    def _on_text(self, event: pb.RunEvent) -> None:
        channel, text = event.text.channel, _TAGS.sub("", event.text.text)
        if channel == pb.CHANNEL_UNSPECIFIED:
            self._markup += event.text.text
            found = _PLAN.search(self._markup)
            if found and not self._plan_shown:  # a planner's plan, shown once it is complete
                self._end_stream()
                self._show_plan(found.group(1))
            return  # tool-call markup: shown as tool calls below
        if not text:
            return
        if self._streaming != channel:
            self._end_stream()
            label = "thinking" if channel == pb.CHANNEL_THINK else "answer"
            self.console.print(f"[step {event.step}] {label}: ", style="dim" if channel == pb.CHANNEL_THINK else "bold",
                               end="")
            self._streaming = channel
        style = "dim italic" if channel == pb.CHANNEL_THINK else "bold green"
        self.console.print(Text(text.replace("\n", " "), style=style), end="")

    def _on_tool_call(self, event: pb.RunEvent) -> None:
        call = event.tool_call
        args = json.loads(call.arguments_json or "{}")
        self.console.print(Text(f"→ tool call {call.call_id}: {call.name}", style="bold cyan"))
        if call.name == "code" and isinstance(args.get("code"), str):
            self.console.print(Syntax(args["code"], "python", theme="ansi_dark", line_numbers=False, padding=(0, 2)))
        else:
            self.console.print(Text("   " + json.dumps(args, ensure_ascii=False), style="cyan"))

    def _on_observation(self, event: pb.RunEvent) -> None:
        obs = event.observation
        head = f"← observation {obs.call_id or '(step)'}: {obs.name}"
        if obs.duration_s:
            head += f" ({obs.duration_s * 1000:.0f} ms)"
        if obs.is_error:
            self.console.print(Text(f"{head} — error ({obs.error_kind})", style="bold red"))
        else:
            self.console.print(Text(head, style="bold magenta"))
        text = obs.text if len(obs.text) <= self._chars else obs.text[: self._chars] + f" … [{len(obs.text)} chars]"
        self.console.print(Text("   " + text.replace("\n", "\n   "), style="red" if obs.is_error else ""))
        for image in obs.images:
            path = self._save(image)
            where = f" saved to {path}" if path else ""
            self.console.print(Text(f"   new image {image.name} {image.width}x{image.height} ({image.origin}){where}",
                                    style="magenta"))

    def _on_answer(self, event: pb.RunEvent) -> None:
        answer = event.answer
        if answer.plan_json and answer.text == answer.plan_json:  # a planner's reply is its plan
            if not self._plan_shown:
                self._show_plan(answer.plan_json)
            return
        self.console.print(Panel(Text(answer.text), title="answer", border_style="green"))

    def _show_plan(self, raw: str) -> None:
        try:
            steps = json.loads(raw)
        except ValueError:
            return  # not a plan the fabric can read: the step's error observation says why
        if not isinstance(steps, list):
            return
        lines = [f"{n}. {s.get('description', '')}  [{s.get('tool_name', '?')}] "
                 f"{json.dumps(s.get('parameters', {}), ensure_ascii=False)}"
                 for n, s in enumerate(steps, start=1) if isinstance(s, dict)]
        self.console.print(Panel(Text("\n".join(lines)), title="plan", border_style="green"))  # "[…]" is no markup
        self._plan_shown = True

    def _on_usage(self, event: pb.RunEvent) -> None:
        u = event.usage
        calls = ", ".join(f"{k} {v}" for k, v in sorted(u.tool_calls.items())) or "none"
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(u.phase_seconds.items()))
        unit = u.token_unit or "tokens"
        self.console.print(f"usage: {u.steps} steps; tool calls: {calls}; {unit} in/out {u.input_tokens}/"
                           f"{u.output_tokens}; {phases}", style="dim")
        if u.counters:
            self.console.print("counters: " + ", ".join(f"{k} {v:g}" for k, v in sorted(u.counters.items())),
                               style="dim")

    def _on_tokens(self, event: pb.RunEvent) -> None:
        t = event.tokens
        prompt = t.prompt_reused + len(t.prompt_token_ids)
        images = f", {sum(t.image_tokens)} image tokens" if t.image_tokens else ""
        self.console.print(f"tokens: prompt {prompt}{images}, completion {len(t.completion_token_ids)}"
                           f"{' (token-in)' if t.token_in else ''}", style="dim")

    def _on_error(self, event: pb.RunEvent) -> None:
        self.console.print(Text(f"error {event.error.code}: {event.error.message}", style="bold red"))

    def _on_finished(self, event: pb.RunEvent) -> None:
        f = event.finished
        style = "bold green" if f.status == pb.STATUS_COMPLETED else "bold yellow"
        self.console.print(Text(f"{pb.Status.Name(f.status)}: {f.reason}", style=style))

    def _save(self, image: pb.ImageRef) -> Path | None:
        if self._out is None or self._fetch is None:
            return None
        folder = self._out / self._trajectory
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9]+", "-", image.name.lower()).strip("-")
        path = folder / f"step{image.step:02d}-{name}{_EXT.get(image.mime_type, '.png')}"
        path.write_bytes(self._fetch(image.blob))
        self.saved.append(path)
        return path
