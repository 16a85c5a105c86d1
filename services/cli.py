"""The server commands of `toolfabric`: up, gateway, worker, index.

Registered with the client CLI through the `toolfabric.commands` entry point (pyproject.toml).
This module imports only the standard library at load time; each command imports what it runs,
and a missing server dependency is one clear line naming the extra to install.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVICES = ("vision", "search", "fetch")


def _needs_server(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"gateway", "services", "toolfabric"}:
                raise
            print(f"toolfabric {args.command}: needs the server dependencies, which are not installed "
                  f"(no module named {exc.name!r}): pip install 'toolfabric[server]'", file=sys.stderr)
            return 2
    return run


@_needs_server
def cmd_up(args: argparse.Namespace) -> int:
    from services.devstack.stack import EmbeddedStack
    from services.devstack.supervisor import Supervisor
    from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION, stream_run

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="toolfabric-"))
    # Tracing on by default in the embedded stack, into a span file `toolfabric trace ID` reads.
    spans = workdir.resolve() / "traces.jsonl"
    tracing = {} if "OTEL_TRACES_EXPORTER" in os.environ else {
        "OTEL_TRACES_EXPORTER": "file", "TOOLFABRIC_TELEMETRY_TRACES_FILE": str(spans)}
    stack = EmbeddedStack(workdir, gateway_port=args.port or None, demo_site=not args.no_demo_site,
                          extra_env=tracing)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, SIGTERM and a closed terminal all stop everything (a shell may start us with SIGINT ignored).
    # Killed any other way (SIGKILL, OOM), the children stop themselves: each has a parent-death signal.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
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
        supervisor = Supervisor(stack, _say)
        while True:
            supervisor.check()  # a crashed worker, gateway, Redis or Triton is restarted, with backoff
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping")
        stack.stop()


def _say(message: str) -> None:
    # stderr may be a pipe whose reader is gone (`toolfabric up | tee` closed): the stack keeps running.
    try:
        print(f"[toolfabric up] {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


@_needs_server
def cmd_worker(args: argparse.Namespace) -> int:
    from services.common.worker import run_worker

    run_worker(args.service, concurrency=args.concurrency)
    return 0


@_needs_server
def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.server import main as gateway_main

    gateway_main()
    return 0


@_needs_server
def cmd_index(args: argparse.Namespace) -> int:
    from services.index import indexer

    return indexer.run(args)


def register(sub: Any) -> None:
    """Add the server commands to the client CLI's subparsers."""
    up = sub.add_parser("up", help="start the whole stack on this machine (embedded default)")
    up.add_argument("--demo", action="store_true", help="run the demo question, then stop")
    up.add_argument("--port", type=int, default=50051, help="gateway port (0 = any free port)")
    up.add_argument("--workdir", help="where logs and data go (default: a new temporary folder)")
    up.add_argument("--out", default="toolfabric-output", help="folder for the demo's images")
    up.add_argument("--no-demo-site", action="store_true", help="do not serve and index the demo corpus")
    up.set_defaults(func=cmd_up)

    worker = sub.add_parser("worker", help="run a tool service's Celery worker")
    worker.add_argument("service", choices=list(SERVICES))
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(func=cmd_worker)

    gw = sub.add_parser("gateway", help="run the gRPC gateway")
    gw.set_defaults(func=cmd_gateway)

    index = sub.add_parser("index", help="index files or URLs into the local search index")
    index.add_argument("paths", nargs="+", metavar="PATH_OR_URL",
                       help="files, directories (recursive) or http(s) URLs of HTML/markdown/text/PDF/images")
    index.add_argument("--base-url", default=None,
                       help="record DIR/x.html at BASE_URL/x.html instead of its file:// URL")
    index.add_argument("--clear", action="store_true", help="empty the index first")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    index.set_defaults(func=cmd_index)
