"""`toolfabric eval …`: run, import, report, compare (registered by cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

from toolfabric.listing import parse_labels
from toolfabric.v1.names import DEFAULT_MODE, MODES
from toolfabric_server.evals.errors import EvalError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", required=True)
    run = sub.add_parser("run", help="ask every question of a dataset through the fabric and grade the answers")
    run.add_argument("dataset", help="eval JSONL (see `toolfabric eval import` for published formats)")
    run.add_argument("--name", help="run name (default: the dataset's name); reusing it resumes the run")
    run.add_argument("--runs-dir", default="eval-runs", help="where run folders go")
    run.add_argument("--target", help="gateway address (default 127.0.0.1:50051; with --bundle, a stack of "
                                       "its own started offline)")
    run.add_argument("--concurrency", type=int, default=4)
    run.add_argument("--mode", default=DEFAULT_MODE, choices=list(MODES))
    run.add_argument("--model", default="", help="Triton model (default: the server's)")
    run.add_argument("--temperature", type=float, help="default 0.2, as R1V4's benchmarks")
    run.add_argument("--max-tokens", type=int, help="default 20480 as R1V4's benchmarks, or the gateway's cap if "
                                                   "lower (with a warning)")
    run.add_argument("--seed", type=int)
    run.add_argument("--max-steps", type=int, default=0)
    run.add_argument("--max-tool-calls", type=int, default=0)
    run.add_argument("--tools", default="", metavar="NAME,NAME", help="offer the model only these tools (default: "
                                                                         "every tool of the mode)")
    run.add_argument("--deadline", type=float, default=0.0, help="seconds per question")
    run.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="on every trajectory")
    run.add_argument("--limit", type=int, default=0, help="only the first N items")
    run.add_argument("--judge", choices=["none", "triton", "openai"],
                     help="judge backend (default TOOLFABRIC_EVAL_JUDGE_BACKEND)")
    run.add_argument("--judge-model", help="judge model name (default TOOLFABRIC_EVAL_JUDGE_MODEL)")
    run.add_argument("--judge-url", help="Triton address or OpenAI-compatible base URL of the judge")
    run.add_argument("--judge-replay", action="store_true",
                     help="grade from the judge cache only (a miss is an error): reproducible reruns")
    run.add_argument("--judge-cache", help="judge cache file (default RUN/judge_cache.jsonl); another run's "
                                           "cache replays its grading")
    run.add_argument("--freeze", action="store_true",
                     help="write RUN/bundle: every search, page and judge reply the run used (content-addressed; "
                     "needs the stack's TOOLFABRIC_REDIS_URL and TOOLFABRIC_DATA_DIR)")
    run.add_argument("--bundle", metavar="DIR",
                     help="rerun offline from a frozen bundle (`--freeze`'s, or `eval import-cache`'s): searches, "
                     "pages and judge replies come from it only")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(eval_func=cmd_run)

    imp = sub.add_parser("import", help="convert a published benchmark file into eval JSONL")
    from toolfabric_server.evals.importers import IMPORTERS

    imp.add_argument("format", choices=sorted(IMPORTERS))
    imp.add_argument("source", help="the file as published (parquet or JSONL)")
    imp.add_argument("out", help="eval JSONL to write (images go to images/ beside it)")
    imp.add_argument("--limit", type=int, default=0)
    imp.set_defaults(eval_func=cmd_import)

    cache = sub.add_parser("import-cache", help="convert a published search cache into a bundle (for --bundle)")
    cache.add_argument("format", choices=["vdr"], help="vdr: Vision-DeepResearch's SQLite cache (rllm/eval/tools.py)")
    cache.add_argument("source", help="the cache file")
    cache.add_argument("out", help="the bundle folder to write")
    cache.set_defaults(eval_func=cmd_import_cache)

    report = sub.add_parser("report", help="write a self-contained HTML report of a run")
    report.add_argument("run", help="run folder")
    report.add_argument("--out", help="HTML file (default RUN/report.html)")
    report.add_argument("--target", help="gateway to fetch trajectories from (default: the run's, from run.json)")
    report.add_argument("--no-trajectories", action="store_true", help="do not embed the trajectories")
    report.set_defaults(eval_func=cmd_report)

    compare = sub.add_parser("compare", help="paired difference of two runs with McNemar's test, and how each run "
                                             "used the tools (valid calls per step, answers, schema validity, "
                                             "accuracy, steps)")
    compare.add_argument("a", help="run folder A (baseline)")
    compare.add_argument("b", help="run folder B")
    compare.add_argument("more", nargs="*", help="more run folders for the tool-use table")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(eval_func=cmd_compare)


def main(args: argparse.Namespace) -> int:
    try:
        return int(args.eval_func(args) or 0)
    except EvalError as exc:
        print(f"toolfabric eval: {exc}", file=sys.stderr)
        return 2


def _labels(pairs: list[str]) -> dict[str, str]:
    try:
        return parse_labels(pairs)
    except ValueError as exc:
        raise EvalError(str(exc)) from None


def make_judge(args: argparse.Namespace, run_dir: Path, bundle: Any = None) -> Any:
    from toolfabric_server.evals import settings as eval_settings
    from toolfabric_server.evals.judge import Judge, OpenAIJudge, TritonJudge

    if bundle is not None and bundle.judge_name:  # the bundle's own judge, replayed: no judge is asked
        run_dir.mkdir(parents=True, exist_ok=True)
        replies = {key: bundle.judge_reply(key) for key in bundle.judge_replies}
        return Judge(None, run_dir / "judge_cache.jsonl", replay=True, name=bundle.judge_name, replies=replies)
    cfg = eval_settings.evals()
    backend = args.judge or cfg.judge_backend
    model = args.judge_model or cfg.judge_model
    if backend == "none":
        return None
    if not model:
        raise EvalError("a judge needs a model: --judge-model or TOOLFABRIC_EVAL_JUDGE_MODEL")
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.judge_cache) if args.judge_cache else run_dir / "judge_cache.jsonl"
    if args.judge_replay:
        return Judge(None, cache, replay=True, name=f"{backend}:{model}")
    if backend == "triton":
        return Judge(TritonJudge(args.judge_url or cfg.judge_triton_url, model, cfg.judge_max_tokens,
                                 cfg.judge_timeout_s), cache)
    return Judge(OpenAIJudge(args.judge_url or cfg.judge_openai_base_url, model,
                             cfg.judge_api_key.get_secret_value(), cfg.judge_max_tokens, cfg.judge_timeout_s), cache)


def cmd_run(args: argparse.Namespace) -> int:
    from toolfabric_server.evals.dataset import load_items
    from toolfabric_server.evals.results import summary_text
    from toolfabric_server.evals.runner import R1V4_MAX_TOKENS, R1V4_TEMPERATURE, EvalRun, RunOptions

    dataset = Path(args.dataset)
    items = load_items(dataset)
    if args.limit:
        items = items[:args.limit]
    name = args.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.stem)
    run_dir = Path(args.runs_dir) / name
    if args.freeze and args.bundle:
        raise EvalError("--freeze and --bundle together: a run from a bundle is already frozen (its bundle)")
    bundle = _open_bundle(args.bundle) if args.bundle else None
    options = RunOptions(target=args.target or "127.0.0.1:50051", concurrency=args.concurrency, mode=args.mode,
                         model=args.model,
                         temperature=R1V4_TEMPERATURE if args.temperature is None else args.temperature,
                         max_tokens=R1V4_MAX_TOKENS if args.max_tokens is None else args.max_tokens,
                         fit_max_tokens=args.max_tokens is None, seed=args.seed, max_steps=args.max_steps,
                         max_tool_calls=args.max_tool_calls, deadline_s=args.deadline, labels=_labels(args.label),
                         tools=tuple(t.strip() for t in args.tools.split(",") if t.strip()))
    source = str(dataset.resolve())

    async def go() -> dict[str, Any]:
        judge = make_judge(args, run_dir, bundle)  # inside the loop: its gRPC/HTTP clients belong to it
        try:
            return await EvalRun(run_dir, name, options, judge, bundle=bundle.hash if bundle else None).run(
                items, progress=not args.no_progress, dataset=source)
        finally:
            if judge is not None:
                await judge.close()

    if bundle is not None and not args.target:
        from toolfabric_server.evals.offline import offline_stack

        with offline_stack(bundle) as target:
            options.target = target
            summary = asyncio.run(go())
    else:
        summary = asyncio.run(go())
    print(summary_text(summary))
    if bundle is not None:
        print(f"bundle: {bundle.path} ({bundle.hash}), offline")
    if args.freeze:
        _freeze(run_dir, name, source)
    print(f"results: {run_dir / 'results.jsonl'}; report: toolfabric eval report {run_dir}")
    return 0


def _open_bundle(path: str) -> Any:
    from toolfabric_server.common.bundle import Bundle, BundleError

    try:
        return Bundle(Path(path))
    except BundleError as exc:
        raise EvalError(str(exc)) from None


def _freeze(run_dir: Path, name: str, dataset: str) -> None:
    from toolfabric_server.common.settings import CommonSettings
    from toolfabric_server.evals import manifest
    from toolfabric_server.evals.freeze import BUNDLE_DIR, freeze
    from toolfabric_server.evals.results import load_results

    records = list(load_results(run_dir).values())
    judge_cache = run_dir / "judge_cache.jsonl"
    digest, count, warnings = freeze(run_dir, records, judge_cache, {"run": name, "dataset": dataset},
                                     CommonSettings())
    manifest.update(run_dir, frozen={"bundle": str(run_dir / BUNDLE_DIR), "hash": digest, "entries": count})
    for warning in warnings:
        print(f"toolfabric eval: warning: {warning}", file=sys.stderr)
    print(f"frozen: {run_dir / BUNDLE_DIR} ({digest}, {count} provider responses); rerun offline: "
          f"toolfabric eval run DATASET --bundle {run_dir / BUNDLE_DIR}")


def cmd_import(args: argparse.Namespace) -> int:
    from toolfabric_server.evals.importers import import_dataset

    items = import_dataset(args.format, Path(args.source), Path(args.out), args.limit)
    print(f"{len(items)} items written to {args.out}")
    return 0


def cmd_import_cache(args: argparse.Namespace) -> int:
    from toolfabric_server.evals.cache_import import import_vdr_cache
    from toolfabric_server.web.settings import FetchSettings

    digest, counts = import_vdr_cache(Path(args.source), Path(args.out), FetchSettings())
    print(f"bundle {args.out} ({digest}): {counts['text_search']} text searches and {counts['text_visit']} pages "
          f"answer evals (--bundle {args.out}); {counts['image_search']} image searches and {counts['image_visit']} "
          "image visits kept, not served (the cache names images by URL, the fabric by content)"
          + (f"; {counts['skipped']} rows skipped (empty query or a URL the fabric refuses)" if counts["skipped"]
             else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from toolfabric_server.evals import manifest
    from toolfabric_server.evals.report import render
    from toolfabric_server.evals.results import load_results

    run_dir = Path(args.run)
    if not (run_dir / "results.jsonl").exists():
        raise EvalError(f"{run_dir} is not a run folder (no results.jsonl)")
    results = load_results(run_dir)
    trajectories: dict[str, Any] = {}
    images: dict[str, str] = {}
    if not args.no_trajectories:
        target = args.target or manifest.read(run_dir).get("target") or "127.0.0.1:50051"
        trajectories, images, problem = _fetch_trajectories(target, results)
        wanted = sum(1 for r in results.values() if r.get("trajectory_id"))
        if wanted and not trajectories:
            print(f"toolfabric eval report: warning: no trajectory embedded: the gateway at {target} "
                  f"{problem or 'has none of them'} (--target names another gateway)", file=sys.stderr)
    out = Path(args.out) if args.out else run_dir / "report.html"
    out.write_text(render(run_dir, trajectories, images), encoding="utf-8")
    print(f"report: {out} ({len(trajectories)} trajectories embedded)")
    return 0


def _fetch_trajectories(target: str, results: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str],
                                                                                   str]:
    """The run's trajectories, their images as data URLs, and why none came (empty when some did)."""
    import base64

    from toolfabric import Client
    from toolfabric.exceptions import ToolfabricError
    from toolfabric_server.evals.trajectory_html import image_blobs

    out: dict[str, Any] = {}
    images: dict[str, str] = {}
    problem = ""
    with Client(target, timeout_s=10) as client:
        for record in results.values():
            tid = record.get("trajectory_id")
            if not tid:
                continue
            try:
                trajectory = out[tid] = client.trajectory(tid)
            except ToolfabricError as exc:
                problem = f"answered {type(exc).__name__}: {exc}"
                print(f"toolfabric eval report: trajectory {tid}: {exc}", file=sys.stderr)
                if "Unavailable" in type(exc).__name__:
                    problem = f"is not reachable ({exc})"
                    break
                continue
            for blob in image_blobs(trajectory):
                if blob in images:
                    continue
                try:
                    image = client.image(blob)
                except ToolfabricError:
                    continue  # expired: the report names the image instead of showing it
                images[blob] = f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"
    return out, images, problem


def cmd_compare(args: argparse.Namespace) -> int:
    from toolfabric_server.evals import behaviour
    from toolfabric_server.evals.results import load_results, mcnemar

    a, b = load_results(Path(args.a)), load_results(Path(args.b))
    result = mcnemar(a, b)
    folders = [Path(args.a), Path(args.b), *(Path(m) for m in args.more)]
    for folder in folders:
        if not (folder / "results.jsonl").exists():
            raise EvalError(f"{folder} is not a run folder (no results.jsonl)")
    tool_use = {str(f): behaviour.summarize(list(load_results(f).values())) for f in folders}
    if args.json:
        print(json.dumps({**result, "tool_use": tool_use}, indent=2))
        return 0
    print(behaviour.table(tool_use))
    print(f"{result['n']} paired items: A {result['accuracy_a']:.1%}, B {result['accuracy_b']:.1%}, "
          f"B - A = {result['difference']:+.1%} ± {result['ci95']:.1%} (95 %)")
    print(f"only A correct: {result['a_only_correct']}, only B correct: {result['b_only_correct']}; "
          f"McNemar exact p = {result['p_value']:.4g}")
    if result["only_in_a"] or result["only_in_b"]:
        print(f"not paired: {result['only_in_a']} items only in A, {result['only_in_b']} only in B")
    return 0
