"""The server commands of `toolfabric`: up, gateway, worker, mcp, index, keys, eval, export, flywheel, store.

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

from toolfabric.cli.main import SERVER_INSTALL


def _needs_server(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"toolfabric_server", "toolfabric"}:
                raise
            print(f"toolfabric {args.command}: needs the server dependencies, which are not installed "
                  f"(no module named {exc.name!r}): reinstall {SERVER_INSTALL}", file=sys.stderr)
            return 2
        except Exception as exc:
            problem = _settings_problem(exc)
            if problem is None:
                raise
            # A bad or missing setting: one line and a non-zero exit (a restarting container shows
            # the reason, not a traceback or a connection retry loop).
            print(f"toolfabric {args.command}: {problem}", file=sys.stderr)
            return 2
    return run


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    direct: type
    for direct in cls.__subclasses__():
        found += [direct, *_subclasses(direct)]
    return found


def _settings_problem(exc: Exception) -> str | None:
    """'TOOLFABRIC_X: what is wrong' for a settings error, None for anything else."""
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings

    from toolfabric_server.common.errors import ConfigurationError

    if isinstance(exc, ConfigurationError):
        return str(exc)
    if not isinstance(exc, ValidationError):
        return None
    # The class that raised is imported (each service owns its settings module): found among the subclasses.
    owner = next((c for c in _subclasses(BaseSettings) if c.__name__ == exc.title), None)
    if not (isinstance(owner, type) and issubclass(owner, BaseSettings)):
        return None  # a validation error that is not about the environment: a bug, keep the traceback
    prefix = owner.model_config.get("env_prefix", "")
    problems = []
    for error in exc.errors(include_url=False):
        name = prefix + "__".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


_DOOR_WHAT = {"fabric": "gRPC Fabric API", "health": "gRPC health (probes)", "chat": "HTTP chat completions",
              "step": "step API (POST /get_observation)", "mcp": "MCP (streamable HTTP)", "blobs": "blob URLs",
              "metrics": "Prometheus metrics"}
_DOOR_PATH = {"step": "/get_observation", "mcp": "/mcp", "chat": "/v1"}


def _print_doors(doors_file: Path) -> None:
    """Every door the gateway serves, with the policy in force there (from the list the gateway wrote)."""
    from toolfabric_server.gateway.policy.doors import read

    guard = {"api_key": "API key required", "signed_url": "signed URLs only", "none": "no key asked"}
    for door in read(doors_file):
        print(f"[toolfabric up] door {door.name:<6} {door.address}{_DOOR_PATH.get(door.name, '')}  "
              f"{_DOOR_WHAT.get(door.name, door.name)}; {'TLS' if door.tls else 'plaintext'}, {guard[door.guard]}",
              file=sys.stderr)


def _print_store(data_dir: Path, redis_url: str) -> None:
    """Which durable store the stack writes, and the environment `toolfabric store` / `keys` need to find it."""
    from toolfabric_server.common.settings import CommonSettings
    from toolfabric_server.store.settings import StoreSettings
    from toolfabric_server.store.trajectories import describe

    print(f"[toolfabric up] durable store: {describe(StoreSettings(), CommonSettings(data_dir=str(data_dir)))}; "
          f"`toolfabric store …` and `toolfabric keys …` act on it with TOOLFABRIC_DATA_DIR={data_dir} "
          f"TOOLFABRIC_REDIS_URL={redis_url}", file=sys.stderr)


@_needs_server
def cmd_up(args: argparse.Namespace) -> int:
    from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION, stream_run
    from toolfabric.v1.names import DEFAULT_MODE
    from toolfabric_server.devstack.model_endpoint import ModelEndpoint
    from toolfabric_server.devstack.stack import EmbeddedStack
    from toolfabric_server.devstack.supervisor import Supervisor

    if args.judge and args.judge != "local" and not (args.judge.startswith(("http://", "https://"))
                                                     and args.judge_model):
        print("toolfabric up: --judge is `local` or an OpenAI-compatible base URL (http…) with --judge-model",
              file=sys.stderr)
        return 2
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="toolfabric-"))
    # Tracing on by default in the embedded stack, into a span file `toolfabric trace ID` reads.
    spans = workdir.resolve() / "traces.jsonl"
    tracing = {} if "OTEL_TRACES_EXPORTER" in os.environ else {
        "OTEL_TRACES_EXPORTER": "file", "TOOLFABRIC_TELEMETRY_TRACES_FILE": str(spans)}
    user_data = os.environ.get("TOOLFABRIC_DATA_DIR")
    endpoint = ModelEndpoint.ask(args.model_endpoint, args.endpoint_model, args.endpoint_dialect,
                                 args.endpoint_checkpoint) if args.model_endpoint else None
    stack = EmbeddedStack(workdir, gateway_port=args.port or None, demo_site=not args.no_demo_site,
                          extra_env=tracing, data_dir=Path(user_data) if user_data else None, model=args.model,
                          step_port=args.step_port, mcp_port=args.mcp_port, model_endpoint=endpoint,
                          extra_models=(LOCAL_JUDGE,) if args.judge == "local" else ())

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
    print(f"[toolfabric up] HTTP API (OpenAI chat completions, R1V4's model names): {stack.http_url}/v1",
          file=sys.stderr)
    _print_doors(stack.doors_file)
    _print_store(stack.data_dir, stack.redis.url)
    for plugin, why in stack.left_out.items():
        print(f"[toolfabric up] plugin {plugin} is left out (its worker did not start): {why}", file=sys.stderr)
    if os.environ.get("TOOLFABRIC_AUTH_REQUIRED", "").lower() not in ("1", "true", "yes", "on"):
        print("[toolfabric up] WARNING: authentication is OFF — every caller is trusted and shares one tenant. "
              "Keep this on loopback; set TOOLFABRIC_AUTH_REQUIRED=true and create keys with "
              "`toolfabric keys create TENANT` anywhere else.", file=sys.stderr)
    if args.judge:
        _print_judge(args.judge, args.judge_model, stack.triton.grpc_url)
    # `eval run --freeze` reads the stack's cache as its workers do.
    print(f"[toolfabric up] its cache, for `toolfabric eval run --freeze`: TOOLFABRIC_REDIS_URL={stack.redis.url} "
          f"TOOLFABRIC_DATA_DIR={stack.data_dir}", file=sys.stderr)
    print("[toolfabric up] metrics: " + ", ".join(f"{name} http://127.0.0.1:{port}/metrics"
                                                  for name, port in stack.metrics_ports.items()), file=sys.stderr)
    try:
        if args.demo:
            print(f"[toolfabric up] demo question: {DEMO_QUESTION}", file=sys.stderr)
            return stream_run(stack.target, DEMO_QUESTION, [str(DEMO_IMAGE)], Path(args.out),
                              trace_file=spans if tracing else None, mode=DEFAULT_MODE)
        from toolfabric_server.common.settings import CommonSettings
        from toolfabric_server.devstack.served import describe_index, suggestion

        pages, where = describe_index(CommonSettings(), stack.data_dir)
        print(f"[toolfabric up] search index: {where}", file=sys.stderr)
        print(f"[toolfabric up] running; logs in {workdir / 'logs'}. Try:\n"
              f"  {suggestion(stack.target, demo=stack.demo_site and not stack.user_data, pages=pages)}\n"
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


LOCAL_JUDGE = "toolfabric_judge"  # model/repository/toolfabric_judge: a reference-match judge


def _print_judge(judge: str, model: str | None, triton_url: str) -> None:
    """Where the eval judge is, and the flags that grade with it."""
    if judge == "local":
        where = f"{LOCAL_JUDGE} (reference match, not an LLM) on Triton at {triton_url}"
        flags = f"--judge triton --judge-model {LOCAL_JUDGE} --judge-url {triton_url}"
    else:
        where = f"{model} at the OpenAI-compatible endpoint {judge}"
        flags = f"--judge openai --judge-model {model} --judge-url {judge}"
    print(f"[toolfabric up] eval judge: {where}; grade with: toolfabric eval run DATASET {flags}", file=sys.stderr)


def _require(*, model: bool = False) -> None:
    """Addresses a server cannot run without. Their loopback defaults suit `toolfabric up`; the
    image sets them empty (nothing listens on a container's loopback), so a container started
    without them stops here, naming what to set, instead of retrying 127.0.0.1 forever."""
    from toolfabric_server.common import settings
    from toolfabric_server.common.errors import ConfigurationError
    from toolfabric_server.model import settings as model_settings

    missing = []
    if not settings.common().redis_url.strip():
        missing.append("TOOLFABRIC_REDIS_URL (e.g. redis://:PASSWORD@redis:6379/0)")
    if model and not model_settings.model().triton_url.strip():
        missing.append("TOOLFABRIC_MODEL_TRITON_URL (e.g. triton:8001)")
    if missing:
        raise ConfigurationError(f"not set: {', '.join(missing)}")
def _say(message: str) -> None:
    # stderr may be a pipe whose reader is gone (`toolfabric up | tee` closed): the stack keeps running.
    try:
        print(f"[toolfabric up] {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


@_needs_server
def cmd_worker(args: argparse.Namespace) -> int:
    _require()
    from toolfabric_server.catalog import plugins
    from toolfabric_server.common.tools import SERVICES
    from toolfabric_server.common.worker import run_worker

    if args.service in (*SERVICES, "mcp"):  # mcp: the tools of TOOLFABRIC_MCP_CLIENT_SERVERS
        run_worker(args.service, concurrency=args.concurrency)
        return 0
    found = plugins()
    plugin = found.get(args.service)
    if plugin is None:
        known = ", ".join([*SERVICES, *(p.service for p in found.loaded)])
        print(f"toolfabric worker: no service {args.service!r}; available: {known}", file=sys.stderr)
        for problem in found.problems:
            print(f"toolfabric worker: {problem}", file=sys.stderr)
        return 2
    run_worker(plugin.service, concurrency=args.concurrency, plugin=plugin)
    return 0


@_needs_server
def cmd_gateway(args: argparse.Namespace) -> int:
    _require(model=True)
    from toolfabric_server.gateway.server import main as gateway_main

    gateway_main()
    return 0


@_needs_server
def cmd_mcp(args: argparse.Namespace) -> int:
    from toolfabric_server.gateway.mcp.stdio import main as mcp_main

    mcp_main()
    return 0


@_needs_server
def cmd_index(args: argparse.Namespace) -> int:
    from toolfabric_server.index import indexer

    return indexer.run(args)


@_needs_server
def cmd_eval(args: argparse.Namespace) -> int:
    from toolfabric_server.evals.cli import main

    return main(args)


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from toolfabric_server.evals.cli import add_arguments
    except ModuleNotFoundError:  # without its dependencies the command says what to install when run
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        return
    add_arguments(parser)


@_needs_server
def cmd_flywheel(args: argparse.Namespace) -> int:
    from toolfabric_server.flywheel.pipeline import TOOLS, Settings, run
    from toolfabric_server.model.settings import ModelSettings

    tools = TOOLS if args.tools is None else tuple(t.strip() for t in args.tools.split(",") if t.strip())
    run(Settings(Path(args.workdir).resolve(), train_limit=args.train_limit, heldout_limit=args.heldout_limit,
                 train_steps=args.train_steps, learning_rate=args.learning_rate, max_length=args.max_length,
                 steps_per_row=args.steps_per_row, scheduler=args.scheduler, reuse_data=args.reuse_data,
                 reuse_training=args.reuse_training,
                 model_max_steps=args.model_max_steps, model_max_tokens=args.model_max_tokens,
                 concurrency=args.concurrency, seed=args.seed, tools=tools, model=ModelSettings()))
    return 0


@_needs_server
def cmd_store(args: argparse.Namespace) -> int:
    from toolfabric_server.gateway import erasure
    from toolfabric_server.store.cli import main

    return main(args, erasure)  # delete means gone: Redis's copies go with the store's


@_needs_server
def cmd_export(args: argparse.Namespace) -> int:
    from toolfabric_server.export.cli import main

    return main(args)


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from toolfabric_server.export.cli import add_arguments
    except ModuleNotFoundError:
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        return
    add_arguments(parser)
def cmd_keys(args: argparse.Namespace) -> int:
    import datetime as dt

    from toolfabric_server.common import settings
    from toolfabric_server.common.api_keys import ApiKeyStore, store_url
    from toolfabric_server.store import settings as store_settings

    store = ApiKeyStore(store_url(store_settings.store().url.get_secret_value(), settings.common().data_dir))
    try:
        if args.action == "create":
            try:
                key, record = store.create(args.tenant, args.name or "")
            except ValueError as exc:
                print(f"toolfabric keys create: {exc}", file=sys.stderr)
                return 2
            print(f"created key {record.key_id} for tenant {record.tenant!r}; it is shown only now:", file=sys.stderr)
            print(key)
            return 0
        if args.action == "list":
            for k in store.list(args.tenant):
                when = dt.datetime.fromtimestamp(k.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
                state = "revoked" if k.revoked_at else "active"
                print(f"{k.key_id}  {k.tenant:<20} {state:<8} {when}  {k.name}")
            return 0
        if store.revoke(args.key_id):
            print(f"revoked {args.key_id}", file=sys.stderr)
            return 0
        print(f"toolfabric keys revoke: no active key {args.key_id!r}", file=sys.stderr)
        return 1
    finally:
        store.close()


@_needs_server
def cmd_model_make_tiny(args: argparse.Namespace) -> int:
    from toolfabric_server.model.engine_venv import engine_venv, run_in_engine_venv
    from toolfabric_server.model.settings import ModelSettings

    argv = ["--family", args.family, "--seed", str(args.seed), str(Path(args.out).resolve())]
    venv = engine_venv(ModelSettings())
    return run_in_engine_venv("toolfabric_server.model.tiny", argv, venv, check=False).returncode


def register(sub: Any) -> None:
    """Add the server commands to the client CLI's subparsers."""
    up = sub.add_parser("up", help="start the whole stack on this machine (embedded default)")
    up.add_argument("--demo", action="store_true", help="run the demo question, then stop")
    up.add_argument("--port", type=int, default=50051, help="gateway port (0 = any free port)")
    up.add_argument("--workdir", help="where logs and data go (default: a new temporary folder)")
    up.add_argument("--out", default="toolfabric-output", help="folder for the demo's images")
    up.add_argument("--no-demo-site", action="store_true", help="do not serve and index the demo corpus")
    up.add_argument("--step-port", type=int, metavar="PORT",
                    help="also serve the step API (verl-tool's POST /get_observation) here (0 = any free port)")
    up.add_argument("--mcp-port", type=int, metavar="PORT",
                    help="also serve the tools as an MCP server (streamable HTTP at /mcp) here (0 = any free port)")
    up.add_argument("--model", default="baseline",
                    help="the default model: baseline (the CPU policy, default), or a tiny model with random weights "
                    "made on first use and served by a real engine: tiny-qwen3 (vLLM), tiny-qwen3vl or tiny-deepeyes "
                    "(transformers, images), or a checkpoint directory of that architecture (a trained one: "
                    "docs/flywheel.md; served under its directory's name); needs `make setup-model` (docs/models.md)")
    up.add_argument("--model-endpoint", metavar="URL",
                    help="the default model from an OpenAI-compatible completions server already running (a team's "
                    "`vllm serve`, SGLang) at URL (…/v1): the fabric renders prompts itself and streams /completions; "
                    "key in TOOLFABRIC_MODEL_ENDPOINT_API_KEY (docs/models.md)")
    up.add_argument("--endpoint-model", default="", metavar="NAME",
                    help="with --model-endpoint: the server's model name (default: the first it lists)")
    up.add_argument("--endpoint-dialect", default="qwen3vl", metavar="DIALECT",
                    help="with --model-endpoint: the model's chat template and output format (default qwen3vl)")
    up.add_argument("--endpoint-checkpoint", metavar="DIR",
                    help="with --model-endpoint: the model's checkpoint directory (its tokenizer.json): prompts go "
                    "as token ids and every step's ids are recorded exactly")
    up.add_argument("--judge", metavar="local|URL",
                    help="an eval judge: local (a reference-match judge served by the stack's Triton) or the base "
                    "URL of an OpenAI-compatible endpoint (with --judge-model); its address and the eval flags "
                    "are printed")
    up.add_argument("--judge-model", help="the model name at an OpenAI-compatible judge endpoint")
    up.set_defaults(func=cmd_up)

    from toolfabric_server.model.tiny import FAMILY_NAMES

    model = sub.add_parser("model", help="models the project makes itself (docs/models.md)")
    model_actions = model.add_subparsers(dest="action", required=True)
    tiny = model_actions.add_parser("make-tiny", help="a checkpoint with random weights and a tokenizer trained "
                                    "here, in a dialect's tokens and chat template (runs in the engine venv)")
    tiny.add_argument("--family", choices=FAMILY_NAMES, required=True)
    tiny.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    tiny.add_argument("out", help="the checkpoint directory to write (replaced if it exists)")
    tiny.set_defaults(func=cmd_model_make_tiny)

    worker = sub.add_parser("worker", help="run a tool service's Celery worker")
    worker.add_argument("service", help="vision, search, fetch, or an installed plugin's service (e.g. ocr)")
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(func=cmd_worker)

    gw = sub.add_parser("gateway", help="run the gRPC gateway")
    gw.set_defaults(func=cmd_gateway)

    mcp = sub.add_parser("mcp", help="serve the fabric's tools as an MCP server on stdin/stdout")
    mcp.set_defaults(func=cmd_mcp)
    keys = sub.add_parser("keys", help="API keys of tenants (in the durable store: TOOLFABRIC_STORE_URL)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new key for a tenant (printed once)")
    create.add_argument("tenant")
    create.add_argument("--name", help="what the key is for")
    listing = actions.add_parser("list", help="keys (ids, tenants, state; never the secrets)")
    listing.add_argument("--tenant")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    index = sub.add_parser("index", help="index files or URLs into the local search index")
    index.add_argument("paths", nargs="+", metavar="PATH_OR_URL",
                       help="files, directories (recursive) or http(s) URLs of HTML/markdown/text/PDF/images")
    index.add_argument("--base-url", default=None,
                       help="record DIR/x.html at BASE_URL/x.html instead of its file:// URL")
    index.add_argument("--clear", action="store_true", help="empty the index first")
    index.add_argument("--include", action="append", metavar="GLOB",
                       help="index only files whose relative path matches; repeatable")
    index.add_argument("--exclude", action="append", metavar="GLOB",
                       help="also leave out matching files; repeatable, added to the defaults")
    index.add_argument("--all-files", action="store_true",
                       help="drop the default excludes")
    index.add_argument("--crawl", action="store_true", help="follow same-site links from the URLs, breadth-first")
    index.add_argument("--max-pages", type=int, help="crawl at most this many pages (default: settings)")
    index.add_argument("--max-depth", type=int, help="follow links at most this deep (default: settings)")
    index.add_argument("--rate", type=float, help="crawl at most this many pages a second (default: settings)")
    index.add_argument("--ignore-robots", action="store_true", help="crawl without asking robots.txt")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    index.set_defaults(func=cmd_index)

    store = sub.add_parser("store", help="durable store maintenance: delete trajectories, apply a retention")
    store.set_defaults(func=cmd_store)
    from toolfabric_server.store.cli import add_arguments as add_store_arguments

    add_store_arguments(store)

    exporting = sub.add_parser("export", help="curated training data (SFT, R1V4 rounds, RL view) from trajectories")
    exporting.set_defaults(func=cmd_export)
    _add_export_arguments(exporting)

    evaluate = sub.add_parser("eval", help="benchmark through the fabric: run, import, report, compare")
    evaluate.set_defaults(func=cmd_eval)
    _add_eval_arguments(evaluate)

    flywheel = sub.add_parser("flywheel", help="questions → baseline trajectories → curated export → TRL SFT of the "
                                               "tiny Qwen3-VL → served and evaluated beside the untrained one, with an "
                                               "HTML report (docs/flywheel.md; needs `make setup-model`)")
    flywheel.add_argument("workdir", help="where everything goes (report.html, flywheel.json, runs, checkpoints)")
    flywheel.add_argument("--train-limit", type=int, default=0, help="only the first N training questions")
    flywheel.add_argument("--heldout-limit", type=int, default=0, help="only the first N held-out questions")
    flywheel.add_argument("--train-steps", type=int, default=200, help="SFT optimizer steps")
    flywheel.add_argument("--learning-rate", type=float, default=1e-2)
    flywheel.add_argument("--scheduler", default="cosine", help="learning-rate schedule (transformers' names)")
    flywheel.add_argument("--steps-per-row", type=int, default=2, help="train on each trajectory's first N steps "
                          "(0: whole trajectories, ~4-5k tokens each)")
    flywheel.add_argument("--reuse-data", action="store_true", help="keep WORKDIR's questions, baseline runs and "
                          "export from an earlier run: rerun from training")
    flywheel.add_argument("--reuse-training", action="store_true", help="with --reuse-data, keep its trained "
                          "checkpoint too: rerun the held-out evaluation")
    flywheel.add_argument("--max-length", type=int, default=0, help="training tokens per trajectory, from the start "
                          "(0: whole; truncating through an image fails)")
    flywheel.add_argument("--model-max-steps", type=int, default=4, help="step budget of the neural models' runs")
    flywheel.add_argument("--model-max-tokens", type=int, default=256, help="tokens per step of the neural models")
    flywheel.add_argument("--tools", metavar="NAME,NAME", help="the tools every run offers (default: the ones the "
                          "baseline uses, code,text_search,image_search,web_visit; '' = every tool of the mode)")
    flywheel.add_argument("--concurrency", type=int, default=8)
    flywheel.add_argument("--seed", type=int, default=0)
    flywheel.set_defaults(func=cmd_flywheel)
