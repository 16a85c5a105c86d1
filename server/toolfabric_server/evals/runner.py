"""Running an eval through the fabric: concurrent questions, a live progress line, resume, grading.

Every question is one Run through the SDK's AsyncClient with the run's labels (plus `eval_item` and
`eval_category`) and `eval_run`, so the store finds all its trajectories again (ListTrajectories,
`toolfabric export --eval-run`). Each result is appended to results.jsonl as it finishes: an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from toolfabric import AsyncClient
from toolfabric.exceptions import InvalidArgument, ToolfabricError
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import DEFAULT_MODE, status_name
from toolfabric_server.evals import behaviour, manifest, scoring
from toolfabric_server.evals.dataset import EvalItem, image_input
from toolfabric_server.evals.errors import EvalError, JudgeError
from toolfabric_server.evals.judge import Judge
from toolfabric_server.evals.results import done_ids, load_results, summarize

# R1V4's benchmark protocol (DESIGN.md): what an eval asks for unless told otherwise.
R1V4_TEMPERATURE, R1V4_MAX_TOKENS = 0.2, 20480
_TOKEN_CAP = re.compile(r"sampling\.max_tokens is \d+; it must be within \[1, (\d+)\]")


@dataclass
class RunOptions:
    target: str = "127.0.0.1:50051"
    concurrency: int = 4
    mode: str = DEFAULT_MODE
    model: str = ""
    temperature: float | None = R1V4_TEMPERATURE
    max_tokens: int | None = R1V4_MAX_TOKENS
    # True: max_tokens is the default, lowered to the gateway's cap (with a warning) when that is smaller.
    fit_max_tokens: bool = False
    seed: int | None = None
    max_steps: int = 0
    max_tool_calls: int = 0
    deadline_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 900.0
    tools: tuple[str, ...] = ()  # offer only these tools (empty: the mode's)

    def ask_options(self) -> dict[str, Any]:
        # `tools` only when set: a run made before the option existed still resumes (its manifest has none).
        return {"mode": self.mode, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "seed": self.seed, "max_steps": self.max_steps,
                "max_tool_calls": self.max_tool_calls, "deadline_s": self.deadline_s,
                **({"tools": list(self.tools)} if self.tools else {})}


class EvalRun:
    def __init__(self, run_dir: Path, name: str, options: RunOptions, judge: Judge | None,
                 bundle: str | None = None) -> None:
        self.dir, self.name, self.options, self.judge = run_dir, name, options, judge
        self.bundle = bundle  # the hash of the bundle answering the run offline, if any
        self.metric = "judge" if judge else "sub_exact"
        self._lock = asyncio.Lock()

    async def run(self, items: list[EvalItem], *, progress: bool = True, console: Console | None = None,
                  dataset: str = "") -> dict[str, Any]:
        console = console or Console(stderr=True)
        async with AsyncClient(self.options.target, timeout_s=self.options.timeout_s) as client:
            if self.options.fit_max_tokens:
                await self._fit_max_tokens(client, console)
            manifest.write(self.dir, self.manifest(dataset, len(items)))
            return await self._run(client, items, progress, console)

    async def _run(self, client: AsyncClient, items: list[EvalItem], progress: bool,
                   console: Console) -> dict[str, Any]:
        previous = load_results(self.dir)
        self._end_cut_line()
        skip = done_ids(previous)
        todo = [item for item in items if item.id not in skip]
        records = {i: r for i, r in previous.items() if i in skip}
        if skip:
            console.print(f"resuming {self.name}: {len(skip & {i.id for i in items})} of {len(items)} done",
                          style="dim", soft_wrap=True)
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("acc {task.fields[acc]}"), TextColumn("failures {task.fields[failures]}"),
                       TimeRemainingColumn(), console=console, disable=not progress)
        ids = {i.id for i in items}
        done = [r for i, r in records.items() if i in ids]

        def fields() -> dict[str, Any]:
            acc = sum(1 for r in done if r.get("correct")) / len(done) if done else 0.0
            return {"acc": f"{acc:.1%}", "failures": sum(1 for r in done if r.get("failure"))}

        with bar:
            task = bar.add_task(self.name, total=len(items), completed=len(done), **fields())
            semaphore = asyncio.Semaphore(self.options.concurrency)

            async def one(item: EvalItem) -> None:
                async with semaphore:
                    record = await self._ask(client, item)
                await self._append(record)
                done.append(record)
                bar.update(task, advance=1, **fields())

            await asyncio.gather(*(one(item) for item in todo))
        final = load_results(self.dir)
        summary = summarize([final[i.id] for i in items if i.id in final], self.metric)
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        return summary

    async def _fit_max_tokens(self, client: AsyncClient, console: Console) -> None:
        """Ask the gateway for its max_tokens cap and stay within it, saying so in one line.

        The probe asks for more tokens than any gateway allows: validation refuses it before any model or
        tool runs, and the refusal names the cap (`sampling.max_tokens is N; it must be within [1, CAP]`)."""
        try:
            await client.ask("max_tokens probe", max_tokens=2**31 - 1, mode=self.options.mode)
        except InvalidArgument as exc:
            found = _TOKEN_CAP.search(str(exc))
            if found is None:
                return  # refused for another reason: the questions will say why
            cap = int(found.group(1))
            if self.options.max_tokens is not None and cap < self.options.max_tokens:
                console.print(f"warning: the gateway allows at most {cap} tokens per step; asking with "
                              f"--max-tokens {cap}, not R1V4's {self.options.max_tokens}", style="yellow",
                              soft_wrap=True)
                self.options.max_tokens = cap
        except ToolfabricError:
            return  # unreachable, auth: every question reports it

    def manifest(self, dataset: str, total: int) -> dict[str, Any]:
        return {"run": self.name, "dataset": dataset, "items": total, "target": self.options.target,
                "options": self.options.ask_options(), "concurrency": self.options.concurrency,
                "labels": self.options.labels, "judge": self.judge.name if self.judge else None,
                "metric": self.metric, "bundle": self.bundle}

    async def _ask(self, client: AsyncClient, item: EvalItem) -> dict[str, Any]:
        labels = {**self.options.labels, "eval_item": item.id}
        if item.category:
            labels["eval_category"] = item.category
        record: dict[str, Any] = {"id": item.id, "category": item.category, "question": item.question,
                                  "answers": item.answers}
        started = time.monotonic()
        try:
            result = await client.ask(item.question, images=[image_input(i) for i in item.images],
                                      labels=labels, eval_run=self.name, **self.options.ask_options())
        except ToolfabricError as exc:
            if isinstance(exc, InvalidArgument) and _TOKEN_CAP.search(str(exc)):
                # The run's own options are refused: every question would be; stop and say so.
                raise EvalError(f"the gateway refuses the run's options: {exc}") from None
            # A refused request is a result (the same request is refused again); anything else is retried on resume.
            kind = "invalid_request" if isinstance(exc, InvalidArgument) else "rpc_error"
            return {**record, "trajectory_id": "", "prediction": "", "correct": False, "failure": kind,
                    "error": f"{type(exc).__name__}: {exc}", "seconds": time.monotonic() - started,
                    "scores": {"exact": 0, "sub_exact": 0, "f1": 0.0}, "tool_calls": 0}
        seconds = time.monotonic() - started
        prediction = scoring.extract_answer(result.answer)
        scores = {"exact": int(scoring.exact_match(prediction, item.answers)),
                  "sub_exact": int(scoring.sub_exact_match(prediction, item.answers)),
                  "f1": round(scoring.token_f1(prediction, item.answers), 4)}
        usage = result.usage or pb.Usage()
        failure = None
        if result.status != pb.Status.Name(pb.STATUS_COMPLETED):  # the SDK's result spells the enum's name
            failure = status_name(pb.Status.Value(result.status))
        elif not prediction:
            failure = "no_answer"
        record.update(trajectory_id=result.trajectory_id, trace_id=result.trace_id, prediction=prediction,
                      status=result.status, reason=result.reason, scores=scores,
                      tool_calls=sum(usage.tool_calls.values()), tool_calls_by_name=dict(usage.tool_calls),
                      steps=usage.steps, seconds=round(seconds, 3),
                      fabric_seconds=round(usage.phase_seconds.get("total", 0.0), 3),
                      model_seconds=round(usage.phase_seconds.get("model", 0.0), 3),
                      cost_units=usage.counters.get("cost_units", 0.0), failure=failure,
                      behaviour=behaviour.of_events(result.events, usage.steps))
        correct = bool(scores["sub_exact"])
        if self.judge is not None:
            try:
                verdict = await self.judge.grade(item.question, prediction, item.answers)
            except JudgeError as exc:
                record["judge"] = {"verdict": "error", "error": str(exc)}
                record["failure"] = failure or "judge_error"
                correct = False
            else:
                state = "unparseable" if verdict.correct is None else ("yes" if verdict.correct else "no")
                record["judge"] = {"verdict": state, "reply": verdict.reply, "cached": verdict.cached}
                correct = bool(verdict.correct)
                if verdict.correct is None:
                    record["failure"] = failure or "judge_unparseable"
        record["correct"] = correct
        return record

    async def _append(self, record: dict[str, Any]) -> None:
        async with self._lock:
            with (self.dir / "results.jsonl").open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _end_cut_line(self) -> None:
        """An interrupted run can leave half a line: end it, so the next result starts on its own line."""
        path = self.dir / "results.jsonl"
        if path.exists() and path.stat().st_size:
            with path.open("rb+") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")
