"""`toolfabric`: up, run, tools, trajectory, worker, gateway, index, trace."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

DEMO_QUESTION = "Who is the astronaut in this photo, and what was the first Space Shuttle mission she commanded?"
DEMO_IMAGE = Path(__file__).resolve().parents[1] / "demo" / "question.jpg"


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"mode": args.mode, "max_steps": args.max_steps, "max_tool_calls": args.max_tool_calls,
                                  "deadline_s": args.deadline, "model": args.model}
    if args.temperature is not None:
        options["temperature"] = args.temperature
    return options


def stream_run(target: str, question: str, images: list[str], out_dir: Path | None, *,
               trace_file: Path | None = None, **options: Any) -> int:
    from toolfabric.cli.render import TrajectoryPrinter
    from toolfabric.client import Client
    from toolfabric.exceptions import ToolfabricError

    console = Console(highlight=False)
    with Client(target) as client:
        printer = TrajectoryPrinter(console, lambda blob: client.image(blob).data, out_dir)
        status = None
        try:
            for event in client.events(question, images, **options):  # type: ignore[arg-type]
                printer(event)
                if event.WhichOneof("event") == "finished":
                    status = event.finished.status
        except ToolfabricError as exc:
            console.print(f"[bold red]{type(exc).__name__}: {exc}")
            return 2
        if printer.saved:
            console.print(f"images saved in {printer.saved[0].parent}", style="dim", soft_wrap=True)
        if printer.trace_id:
            where = f" --file {trace_file}" if trace_file else ""
            console.print(f"span tree: toolfabric trace {printer.trace_id}{where}", style="dim", soft_wrap=True)
    return 0 if status == 2 else 1  # 2 = STATUS_COMPLETED


def cmd_run(args: argparse.Namespace) -> int:
    return stream_run(args.target, args.question, args.image, Path(args.out) if args.out else None,
                      **_run_options(args))


def cmd_up(args: argparse.Namespace) -> int:
    from services.stack import EmbeddedStack

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="toolfabric-"))
    # Tracing on by default in the embedded stack, into a span file `toolfabric trace ID` reads.
    spans = workdir.resolve() / "traces.jsonl"
    tracing = {} if "OTEL_TRACES_EXPORTER" in os.environ else {
        "OTEL_TRACES_EXPORTER": "file", "TOOLFABRIC_TELEMETRY_TRACES_FILE": str(spans)}
    stack = EmbeddedStack(workdir, gateway_port=args.port or None, demo_site=not args.no_demo_site,
                          extra_env=tracing)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM both stop everything (a shell may start us with SIGINT ignored).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        stack.start(progress=True)
    except KeyboardInterrupt:
        return 130
    if tracing:
        print(f"[toolfabric up] spans go to {spans}; show one: toolfabric trace ID --file {spans}", file=sys.stderr)
    print("[toolfabric up] metrics: " + ", ".join(f"{name} http://127.0.0.1:{port}/metrics"
                                                  for name, port in stack.metrics_ports.items()), file=sys.stderr)
    try:
        if args.demo:
            print(f"[toolfabric up] demo question: {DEMO_QUESTION}", file=sys.stderr)
            return stream_run(stack.target, DEMO_QUESTION, [str(DEMO_IMAGE)], Path(args.out),
                              trace_file=spans if tracing else None, mode="deep_research")
        print(f"[toolfabric up] running; logs in {workdir / 'logs'}. Try:\n"
              f"  toolfabric run --target {stack.target} \"{DEMO_QUESTION}\" --image {DEMO_IMAGE}\n"
              "Ctrl-C stops everything.", file=sys.stderr)
        while True:
            dead = [name for name, ok in stack.alive().items() if not ok]
            if dead:
                print(f"[toolfabric up] {', '.join(dead)} exited; stopping (see {workdir / 'logs'})", file=sys.stderr)
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        print("[toolfabric up] stopping", file=sys.stderr)
        stack.stop()


def cmd_tools(args: argparse.Namespace) -> int:
    from toolfabric.client import Client

    console = Console()
    with Client(args.target) as client:
        for tool in client.tools(args.mode):
            console.print(f"[bold]{tool.name}[/] ({tool.service})" + (f" aliases: {', '.join(tool.aliases)}"
                                                                     if tool.aliases else ""))
            console.print(f"  {tool.description}", style="dim")
            console.print_json(tool.parameters_json_schema)
    return 0


def cmd_trajectory(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from toolfabric.client import Client

    with Client(args.target) as client:
        print(json.dumps(MessageToDict(client.trajectory(args.id)), indent=2, ensure_ascii=False))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from services.common.worker import run_worker

    run_worker(args.service, concurrency=args.concurrency)
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.server import main as gateway_main

    gateway_main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolfabric", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole stack on this machine (embedded default)")
    up.add_argument("--demo", action="store_true", help="run the demo question, then stop")
    up.add_argument("--port", type=int, default=50051, help="gateway port (0 = any free port)")
    up.add_argument("--workdir", help="where logs and data go (default: a new temporary folder)")
    up.add_argument("--out", default="toolfabric-output", help="folder for the demo's images")
    up.add_argument("--no-demo-site", action="store_true", help="do not serve and index the demo corpus")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one agent turn and stream its trajectory")
    run.add_argument("question")
    run.add_argument("--image", action="append", default=[], help="image file or http(s) URL (repeatable)")
    run.add_argument("--target", default="127.0.0.1:50051", help="gateway address")
    run.add_argument("--mode", default="deep_research", choices=["deep_research", "general", "plan"])
    run.add_argument("--max-steps", type=int, default=0)
    run.add_argument("--max-tool-calls", type=int, default=0)
    run.add_argument("--deadline", type=float, default=0.0, help="seconds")
    run.add_argument("--temperature", type=float)
    run.add_argument("--model", default="", help="Triton model name (default: the server's)")
    run.add_argument("--out", default="toolfabric-output", help="folder for the trajectory's images ('' = don't save)")
    run.set_defaults(func=cmd_run)

    tools = sub.add_parser("tools", help="list the tools and their JSON schemas")
    tools.add_argument("--target", default="127.0.0.1:50051")
    tools.add_argument("--mode", choices=["deep_research", "general", "plan"])
    tools.set_defaults(func=cmd_tools)

    traj = sub.add_parser("trajectory", help="print a recorded trajectory as JSON")
    traj.add_argument("id")
    traj.add_argument("--target", default="127.0.0.1:50051")
    traj.set_defaults(func=cmd_trajectory)

    worker = sub.add_parser("worker", help="run a tool service's Celery worker")
    worker.add_argument("service", choices=["vision", "search", "fetch"])
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(func=cmd_worker)

    gw = sub.add_parser("gateway", help="run the gRPC gateway")
    gw.set_defaults(func=cmd_gateway)

    _optional_command(sub, "index", "services.search.indexer", "index files or URLs into the local search index")
    _optional_command(sub, "trace", "services.common.trace_view", "print a trajectory's span tree")
    return parser


def _optional_command(sub: argparse._SubParsersAction, name: str, module: str, help_text: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return
    parser = sub.add_parser(name, help=help_text)
    mod.add_arguments(parser)
    parser.set_defaults(func=mod.run)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
