"""`toolfabric export FORMAT… OUT`: curated training data from the fabric's recorded trajectories."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from toolfabric.listing import parse_labels

FORMATS = ("sft", "trl", "rounds", "rl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (JSONL/JSON files, images/ beside them)")
    parser.add_argument("--format", action="append", choices=FORMATS, dest="formats",
                        help="sft (Qwen3-VL chat messages: sft.jsonl), trl (TRL SFTTrainer's vision format, image "
                             "placeholders and images: trl.jsonl; docs/flywheel.md), rounds (R1V4's rounds, one tool "
                             "call each: rounds.json), rl (token-exact input_ids and loss mask per trajectory: "
                             "rl_tokens.jsonl; prompt/completion text per step: rl.jsonl); repeatable, default sft")
    parser.add_argument("--target", default="127.0.0.1:50051", help="gateway address")
    which = parser.add_argument_group("which trajectories (ListTrajectories filters)")
    which.add_argument("--eval-run", default="")
    which.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    which.add_argument("--model", default="")
    which.add_argument("--question", default="", help="text the question contains")
    which.add_argument("--since", type=float, help="epoch seconds")
    which.add_argument("--limit", type=int, default=0)
    curate = parser.add_argument_group("curation (applied in this order; each reports what it dropped)")
    curate.add_argument("--any-status", action="store_true", help="keep trajectories that did not complete")
    curate.add_argument("--correct-only", metavar="EVAL_RUN_DIR",
                        help="only trajectories the eval run judged correct")
    curate.add_argument("--no-error-observations", action="store_true")
    curate.add_argument("--no-repeated-calls", action="store_true", help="no identical call made twice")
    curate.add_argument("--valid-calls", action="store_true", help="every call valid for its tool's schema")
    curate.add_argument("--images-exist", action="store_true", help="every referenced image exists")
    curate.add_argument("--grounded", action="store_true",
                        help="the answer's key string appears in something the trajectory read")
    curate.add_argument("--min-steps", type=int, default=0)
    curate.add_argument("--max-steps", type=int, default=0)
    curate.add_argument("--min-calls", type=int, default=0)
    curate.add_argument("--max-calls", type=int, default=0)
    curate.add_argument("--consistent", action="store_true",
                        help="drop trajectories whose thinking names a tool the step does not call")
    curate.add_argument("--dedupe-question", action="store_true", help="one trajectory per question")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from toolfabric.exceptions import ToolfabricError

    try:
        return export(args)
    except (ToolfabricError, ValueError, OSError) as exc:
        print(f"toolfabric export: {exc}", file=sys.stderr)
        return 2


def export(args: argparse.Namespace) -> int:
    from toolfabric import Client
    from toolfabric.exceptions import NotFound
    from toolfabric_server.catalog import full_catalog
    from toolfabric_server.export import curation
    from toolfabric_server.export.consistency import check
    from toolfabric_server.export.conversation import rebuild
    from toolfabric_server.export.formats import rl_records, rounds_record, sft_record, trl_record
    from toolfabric_server.export.tokens import rl_token_records
    from toolfabric_server.model.settings import ModelSettings
    from toolfabric_server.tools.mcp.settings import McpClientSettings
    from toolfabric_server.web.settings import FetchSettings

    # The command's start: read once, passed down (the models' dialects, the tools the deployment offers).
    model_settings = ModelSettings()
    tools = full_catalog(McpClientSettings(), FetchSettings())
    console = Console(stderr=True)
    out = Path(args.out)
    formats = args.formats or ["sft"]
    eval_results = _eval_results(Path(args.correct_only)) if args.correct_only else {}
    with Client(args.target, timeout_s=60) as client:
        summaries = []
        for summary in client.iter_trajectories(eval_run=args.eval_run, labels=parse_labels(args.label),
                                                model=args.model, question=args.question, since=args.since,
                                                page_size=500):
            summaries.append(summary)
            if args.limit and len(summaries) >= args.limit:
                break
        summaries.reverse()  # oldest first: dedupe keeps the first trajectory of a question
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                            disable=args.no_progress)
        conversations = []
        with progress:
            task = progress.add_task("reading trajectories", total=len(summaries))
            for summary in summaries:
                conversations.append(rebuild(client.trajectory(summary.trajectory_id), model_settings, tools))
                progress.advance(task)

        images: dict[str, bytes | None] = {}

        def fetch(ref: str) -> bytes | None:
            if ref not in images:
                try:
                    images[ref] = client.image(ref).data
                except NotFound:
                    images[ref] = None
            return images[ref]

        filters = [curation.Filter("completed", curation.completed)] if not args.any_status else []
        if args.correct_only:
            filters.append(curation.Filter("judge-correct", curation.judge_correct(
                lambda c: eval_results.get(c.trajectory.trajectory_id, {}).get("correct"))))
        for flag, name, check_fn in (
                (args.no_error_observations, "no-error-observations", curation.no_error_observations),
                (args.no_repeated_calls, "no-repeated-calls", curation.no_repeated_calls),
                (args.valid_calls, "valid-calls", curation.valid_calls),
                (args.images_exist, "images-exist", curation.images_exist(lambda ref: fetch(ref) is not None)),
                (args.grounded, "grounded", curation.grounded(
                    lambda c: eval_results.get(c.trajectory.trajectory_id, {}).get("answers", []))),
                (any((args.min_steps, args.max_steps, args.min_calls, args.max_calls)), "bounds",
                 curation.bounds(args.min_steps, args.max_steps, args.min_calls, args.max_calls)),
                (args.consistent, "consistent", curation.consistent),
                (args.dedupe_question, "dedupe-question", curation.dedupe_question())):
            if flag:
                filters.append(curation.Filter(name, check_fn))
        kept = curation.apply(filters, conversations)

        out.mkdir(parents=True, exist_ok=True)
        (out / "images").mkdir(exist_ok=True)
        image_path: dict[str, str] = {}
        for conv in kept:
            for image in conv.images:
                data = fetch(image.ref)
                if data is None:
                    raise ValueError(f"image {image.ref} of trajectory {conv.trajectory.trajectory_id} is gone "
                                     "(add --images-exist to drop such trajectories)")
                ext = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}.get(image.mime_type, "png")
                path = f"images/{image.ref.removeprefix('sha256:')[:24]}.{ext}"
                if not (out / path).exists():
                    (out / path).write_bytes(data)
                image_path[image.name + "@" + conv.trajectory.trajectory_id] = path

    written = {}
    if "rl" in formats:
        samples: list[dict[str, Any]] = []
        without: list[str] = []
        for conv in kept:
            paths = {i.name: image_path[i.name + "@" + conv.trajectory.trajectory_id] for i in conv.images}
            records = rl_token_records(conv, paths)
            samples += records
            if not records:
                without.append(conv.trajectory.trajectory_id)
            elif records[0]["first_mismatch"]:
                m = records[0]["first_mismatch"]
                console.print(f"[yellow]{conv.trajectory.trajectory_id}: step {m['step']}'s prompt ids stop extending "
                              f"the previous step's at token {m['position']} (expected {m['expected']}, found "
                              f"{m['found']}); exported as {len(records)} samples")
        if without:
            console.print(f"{len(without)} trajectories have no token ids recorded (the baseline policy, or an engine "
                          f"that returns none) and are not in rl_tokens.jsonl: {', '.join(without[:5])}"
                          + (" …" if len(without) > 5 else ""))
        with (out / "rl_tokens.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in samples)
        written["rl_tokens.jsonl"] = len(samples)
    for fmt in formats:
        rows: list[Any] = []
        for conv in kept:
            paths = {i.name: image_path[i.name + "@" + conv.trajectory.trajectory_id] for i in conv.images}
            if fmt == "sft":
                rows.append(sft_record(conv, paths))
            elif fmt == "trl":
                rows.append(trl_record(conv, paths))
            elif fmt == "rounds":
                rows.append(rounds_record(conv, paths))
            else:
                rows += rl_records(conv, conv.dialect.template, paths)
        name = {"sft": "sft.jsonl", "trl": "trl.jsonl", "rounds": "rounds.json", "rl": "rl.jsonl"}[fmt]
        with (out / name).open("w", encoding="utf-8") as f:
            if fmt == "rounds":
                json.dump(rows, f, ensure_ascii=False, indent=1)
            else:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        written[name] = len(rows)
    with (out / "consistency.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(check(c).to_json(), ensure_ascii=False) + "\n" for c in conversations)
    curated = curation.report(filters, len(conversations), len(kept))
    (out / "curation.json").write_text(json.dumps(curated, indent=2, ensure_ascii=False))

    table = Table("filter", "dropped", "why")
    for f in curated["filters"]:
        table.add_row(f["filter"], str(f["dropped"]), "; ".join(f"{k} ({v})" for k, v in f["reasons"].items()))
    Console().print(table)
    print(f"kept {len(kept)} of {len(conversations)} trajectories; "
          + ", ".join(f"{n}: {c} records" for n, c in written.items()) + f"; in {out}")
    return 0


def _eval_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    from toolfabric_server.evals.results import load_results

    if not (run_dir / "results.jsonl").exists():
        raise ValueError(f"{run_dir} is not an eval run folder (no results.jsonl)")
    return {r["trajectory_id"]: r for r in load_results(run_dir).values() if r.get("trajectory_id")}
