"""`toolfabric flywheel`: questions → baseline trajectories → curated export → TRL SFT → the trained model served
and evaluated through the fabric beside the untrained one and the baseline, with an HTML report.

Every stage goes through the fabric's own commands (`toolfabric eval run`, `toolfabric export`, `eval compare`)
and a real stack (devstack): one with the baseline for the data, one serving the untrained and the
trained checkpoints (transformers engine behind Triton) for the held-out eval. Files, under WORKDIR:

    data/                 train.jsonl, heldout.jsonl, images/   (flywheel/questions.py)
    runs/                 baseline-train, baseline-heldout, untrained-heldout, trained-heldout (eval run folders)
    export/               the curated training set: trl.jsonl, sft.jsonl, curation.json (what each filter dropped)
    checkpoints/          untrained (the base), trained (+ train_log.json)
    export-trained/       the trained model's held-out trajectories as rl_tokens.jsonl + trl.jsonl, tokencheck.json
    compare.json, report.html
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolfabric_server.devstack import neural_models
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.devstack.triton_server import REPOSITORY
from toolfabric_server.flywheel.questions import generate
from toolfabric_server.model.engine_venv import engine_venv, run_in_engine_venv
from toolfabric_server.model.settings import ModelSettings

FILTERS = ("--correct-only", "--grounded", "--consistent")  # in this order; each reports what it dropped
JUDGE = "toolfabric_judge"  # the scripted judge model of the shipped repository, when it is there
# The tools every run of the loop offers: the ones the baseline uses for these questions. The system prompt then
# declares 4 tools, not the mode's 19 (~1.2k tokens in the tiny tokenizer instead of 6.7k), so training rows are
# short enough to train on a CPU; the served models get the same prompt, because the fabric renders it from the
# same request option (`eval run --tools`, recorded in the trajectory, and the export renders it back).
TOOLS = ("code", "text_search", "image_search", "web_visit")


@dataclass
class Settings:
    workdir: Path
    train_limit: int = 0        # 0: every generated question
    heldout_limit: int = 0
    train_steps: int = 200
    learning_rate: float = 1e-2  # high, decayed: the tiny base starts from random weights
    scheduler: str = "cosine"
    steps_per_row: int = 2      # train on each trajectory's first N steps (0: whole trajectories; train.first_steps)
    max_length: int = 0         # tokens per training row, from the start; 0: whole trajectories
    reuse_data: bool = False    # keep WORKDIR's questions, baseline runs and export (rerun from training)
    reuse_training: bool = False  # also keep its trained checkpoint (rerun the held-out evaluation)
    model_max_steps: int = 4    # budgets of the neural models' held-out runs
    model_max_tokens: int = 256
    temperature: float = 0.0    # greedy: what the model learned, without sampling noise
    concurrency: int = 8
    seed: int = 0
    tools: tuple[str, ...] = TOOLS  # () offers every tool of the mode
    # The tiny base checkpoint's cache and the engine venv that trains it (TOOLFABRIC_MODEL_*).
    model: ModelSettings = field(kw_only=True)


def _say(message: str) -> None:
    print(f"[flywheel {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cli(*args: str, timeout: float = 7200) -> str:
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"toolfabric {' '.join(args[:2])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def _judge_args(stack: EmbeddedStack, judged: bool) -> list[str]:
    if not judged:
        return ["--judge", "none"]
    return ["--judge", "triton", "--judge-model", JUDGE, "--judge-url", stack.triton.grpc_url]


def _stack(workdir: Path, judged: bool, also_serve: tuple[str, ...] = ()) -> EmbeddedStack:
    extra: dict[str, Any] = {"extra_models": (JUDGE,)} if judged else {}
    return EmbeddedStack(workdir, also_serve=also_serve, **extra)


def _eval(stack: EmbeddedStack, s: Settings, dataset: Path, name: str, limit: int, judged: bool,
          *model: str) -> Path:
    runs = s.workdir / "runs"
    _cli("eval", "run", str(dataset), "--target", stack.target, "--runs-dir", str(runs), "--name", name,
         "--concurrency", str(s.concurrency), "--max-tokens", str(s.model_max_tokens if model else 8192),
         "--label", f"flywheel={name}", "--no-progress", *(["--limit", str(limit)] if limit else []),
         *(["--tools", ",".join(s.tools)] if s.tools else []),
         *model, *_judge_args(stack, judged))
    return runs / name


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _data(s: Settings, judged: bool) -> tuple[list[Any], list[Any]]:
    """Questions, the baseline's trajectories on them, and the curated export (stack 1)."""
    _say("generating questions over the demo corpus")
    train, held = generate(s.workdir / "data", seed=s.seed)
    _say(f"{len(train)} train / {len(held)} held-out questions (held-out topics: "
         f"{', '.join(sorted({i.category for i in held}))})")
    _say("stack 1: the baseline policy" + (" and the scripted judge" if judged else " (no judge model: sub-exact)"))
    with _stack(s.workdir / "stack-baseline", judged) as stack:
        _say("baseline on the training questions")
        _eval(stack, s, s.workdir / "data" / "train.jsonl", "baseline-train", s.train_limit, judged)
        _say("baseline on the held-out questions")
        _eval(stack, s, s.workdir / "data" / "heldout.jsonl", "baseline-heldout", s.heldout_limit, judged)
        export = s.workdir / "export"
        shutil.rmtree(export, ignore_errors=True)
        _say("exporting the curated training set")
        _cli("export", str(export), "--target", stack.target, "--eval-run", "baseline-train", "--format", "trl",
             "--format", "sft", "--no-progress", FILTERS[0], str(s.workdir / "runs" / "baseline-train"), *FILTERS[1:])
    return train, held


def _train(s: Settings, untrained: Path, trained: Path, rows: int) -> None:
    shutil.rmtree(untrained.parent, ignore_errors=True)
    shutil.copytree(neural_models.checkpoint("qwen3vl", s.model, seed=s.seed), untrained)
    _say(f"training with TRL's SFTTrainer: {s.train_steps} steps on {rows} trajectories")
    run_in_engine_venv("toolfabric_server.flywheel.train", [
        str(s.workdir / "export"), str(untrained), str(trained), "--max-steps", str(s.train_steps),
        "--learning-rate", str(s.learning_rate), "--seed", str(s.seed), "--scheduler", s.scheduler,
        "--steps-per-row", str(s.steps_per_row),
        *(["--max-length", str(s.max_length)] if s.max_length else [])], engine_venv(s.model))


def run(s: Settings) -> dict[str, Any]:
    s.workdir.mkdir(parents=True, exist_ok=True)
    judged = (REPOSITORY / JUDGE).is_dir()
    timings: dict[str, float] = {}
    started = time.monotonic()

    export = s.workdir / "export"
    t = time.monotonic()
    if s.reuse_data and (export / "curation.json").is_file():
        _say(f"reusing the questions, baseline runs and export in {s.workdir}")
        train, held = _lines(s.workdir / "data" / "train.jsonl"), _lines(s.workdir / "data" / "heldout.jsonl")
    else:
        train, held = _data(s, judged)
    timings["data"] = time.monotonic() - t
    curation = json.loads((export / "curation.json").read_text())
    _say(f"kept {curation['kept']} of {curation['trajectories']} trajectories")

    t = time.monotonic()
    untrained, trained = s.workdir / "checkpoints" / "untrained", s.workdir / "checkpoints" / "trained"
    if s.reuse_training and (trained / "train_log.json").is_file():
        _say(f"reusing the trained checkpoint {trained}")
    else:
        _train(s, untrained, trained, curation["kept"])
    timings["train"] = time.monotonic() - t

    t = time.monotonic()
    _say("stack 2: the untrained and the trained checkpoints (transformers engine behind Triton)")
    budgets = ["--max-steps", str(s.model_max_steps), "--temperature", str(s.temperature), "--seed", str(s.seed)]
    with _stack(s.workdir / "stack-models", judged, also_serve=(str(untrained), str(trained))) as stack:
        for name in ("untrained", "trained"):
            _say(f"{name} model on the held-out questions")
            _eval(stack, s, s.workdir / "data" / "heldout.jsonl", f"{name}-heldout", s.heldout_limit, judged,
                  "--model", name, *budgets)
        tokens = s.workdir / "export-trained"
        shutil.rmtree(tokens, ignore_errors=True)
        _cli("export", str(tokens), "--target", stack.target, "--eval-run", "trained-heldout", "--format", "rl",
             "--format", "trl", "--any-status", "--no-progress")
    timings["serve_and_eval"] = time.monotonic() - t
    _say("checking the RL export's token ids and masks against TRL's tokenisation")
    run_in_engine_venv("toolfabric_server.flywheel.tokencheck", [str(tokens), str(trained)], engine_venv(s.model))

    runs = [s.workdir / "runs" / f"{n}-heldout" for n in ("baseline", "untrained", "trained")]
    compared = json.loads(_cli("eval", "compare", *(str(r) for r in runs), "--json"))
    table = _cli("eval", "compare", *(str(r) for r in runs))
    (s.workdir / "compare.json").write_text(json.dumps(compared, indent=2))
    timings["total"] = time.monotonic() - started
    run_settings = {k: str(v) for k, v in asdict(s).items() if k != "model"}
    summary = {"settings": run_settings, "judged": judged, "timings": timings,
               "questions": {"train": len(train), "heldout": len(held)}, "curation": curation,
               "train_log": json.loads((trained / "train_log.json").read_text()),
               "tokencheck": json.loads((tokens / "tokencheck.json").read_text()),
               "compare": compared, "compare_table": table}
    (s.workdir / "flywheel.json").write_text(json.dumps(summary, indent=2))
    from toolfabric_server.flywheel.report import render

    (s.workdir / "report.html").write_text(render(summary), encoding="utf-8")
    _say(f"done in {timings['total']:.0f}s; report: {s.workdir / 'report.html'}")
    print(table)
    return summary
