"""`toolfabric`: the client commands (run, tools, trajectory, trace) and any server commands installed.

Server commands (up, gateway, worker, index) are registered by the server side through the
`toolfabric.commands` entry point group, so this module imports nothing server-side; a client
command never loads them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from toolfabric.v1.names import DEFAULT_MODE, MODES

DEMO_QUESTION = "Who is the astronaut in this photo, and what was the first Space Shuttle mission she commanded?"
DEMO_IMAGE = Path(__file__).resolve().parents[1] / "demo" / "question.jpg"


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"mode": args.mode, "max_steps": args.max_steps, "max_tool_calls": args.max_tool_calls,
                                  "deadline_s": args.deadline, "model": args.model,
                                  "parent_trajectory_id": args.continue_from}
    if args.no_search:
        options["enable_search"] = False
    if args.execute_plan:
        options["execute_plan"] = True
    if args.tools:
        options["tools"] = [t.strip() for t in args.tools.split(",") if t.strip()]
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


def build_parser(with_server_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolfabric", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one agent turn and stream its trajectory")
    run.add_argument("question")
    run.add_argument("--image", action="append", default=[], help="image file or http(s) URL (repeatable)")
    run.add_argument("--target", default="127.0.0.1:50051", help="gateway address")
    run.add_argument("--mode", default=DEFAULT_MODE, choices=list(MODES))
    run.add_argument("--max-steps", type=int, default=0)
    run.add_argument("--max-tool-calls", type=int, default=0)
    run.add_argument("--deadline", type=float, default=0.0, help="seconds")
    run.add_argument("--temperature", type=float)
    run.add_argument("--model", default="", help="Triton model name (default: the server's)")
    run.add_argument("--continue", dest="continue_from", default="", metavar="TRAJECTORY_ID",
                     help="continue that turn: its questions, answers and images are this turn's context")
    run.add_argument("--no-search", action="store_true", help="no search or web tools for this turn")
    run.add_argument("--tools", default="", metavar="NAME,NAME", help="offer the model only these tools")
    run.add_argument("--execute-plan", action="store_true",
                     help="with --mode plan: run the plan the model makes, step by step, and answer from the results")
    run.add_argument("--out", default="toolfabric-output", help="folder for the trajectory's images ('' = don't save)")
    run.set_defaults(func=cmd_run)

    tools = sub.add_parser("tools", help="list the tools and their JSON schemas")
    tools.add_argument("--target", default="127.0.0.1:50051")
    tools.add_argument("--mode", choices=list(MODES))
    tools.set_defaults(func=cmd_tools)

    traj = sub.add_parser("trajectory", help="print a recorded trajectory as JSON")
    traj.add_argument("id")
    traj.add_argument("--target", default="127.0.0.1:50051")
    traj.set_defaults(func=cmd_trajectory)

    from toolfabric.cli import trace, trajectories

    listing = sub.add_parser("trajectories", help="list recorded trajectories (filters, newest first)")
    trajectories.add_arguments(listing)
    listing.set_defaults(func=trajectories.run)

    trace_parser = sub.add_parser("trace", help="print a trajectory's span tree")
    trace.add_arguments(trace_parser)
    trace_parser.set_defaults(func=trace.run)
    if with_server_commands:
        for name, register in _server_registrations():
            try:
                register(sub)
            except ImportError as exc:  # a registration may import server modules: the SDK alone lacks them
                _report_unloadable(name, exc)
        if set(sub.choices) <= CLIENT_COMMANDS:  # the SDK alone: say where the server commands come from
            parser.epilog = NO_SERVER
    return parser


CLIENT_COMMANDS = frozenset({"run", "tools", "trajectory", "trajectories", "trace"})
ENTRY_POINT_GROUP = "toolfabric.commands"
# The server is a second distribution (an extra adds dependencies, not code); it is not on PyPI.
SERVER_INSTALL = "the toolfabric-server distribution (`pip install ./server` in a toolfabric checkout)"
NO_SERVER = (f"Server commands (up, gateway, worker, index, eval, ...) are not installed: they come with "
             f"{SERVER_INSTALL}.")


def _report_unloadable(name: str, exc: Exception) -> None:
    print(f"toolfabric: server commands from {name} could not be loaded ({exc}); "
          f"reinstall {SERVER_INSTALL}", file=sys.stderr)


def _server_registrations() -> list[tuple[str, Callable[[Any], None]]]:
    """The `register(subparsers)` functions the server side declares as entry points.

    A registration that fails to load is reported, never skipped in silence.
    """
    from importlib.metadata import entry_points

    found: Any = entry_points()
    # Python 3.10+ selects by keyword; 3.9 returns a dict of groups.
    group = found.select(group=ENTRY_POINT_GROUP) if hasattr(found, "select") else found.get(ENTRY_POINT_GROUP, ())
    registrations = []
    for entry in group:
        try:
            registrations.append((entry.value, entry.load()))
        except Exception as exc:  # an entry point's import error must not hide the client commands
            _report_unloadable(entry.value, exc)
    return registrations


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    # A client command never loads the server's command modules (nor anything they import).
    client_only = bool(argv) and argv[0] in CLIENT_COMMANDS
    parser = build_parser(with_server_commands=not client_only)
    if parser.epilog == NO_SERVER and argv and not argv[0].startswith("-"):
        # `toolfabric up` with the SDK alone: one line naming what to install, not argparse's list of choices.
        print(f"toolfabric: '{argv[0]}' is not a client command. {NO_SERVER}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    from toolfabric.exceptions import ToolfabricError

    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`… --json | head`): stop quietly, exit 1 as rich's console does for its tables.
        # stdout is pointed at /dev/null so that the interpreter's last flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ToolfabricError as exc:  # the gateway refused or could not be reached: one line, never a traceback
        print(f"toolfabric {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
