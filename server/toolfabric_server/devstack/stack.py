"""The embedded default: the whole fabric on one machine, as child processes.

Redis, the Triton server with the CPU models, one Celery worker per service, the gateway, and (for
the demo) a loopback web server for the demo corpus, which is indexed into the local search index
and the only private address the fetch service may read. Used by `toolfabric up` and the tests.

Redis keeps an append-only file in `<workdir>/redis`, so the stack restarted on the same workdir still has
its trajectories. Every child dies with the process that started it (see `processes.Child`);
`supervise()` restarts whatever crashed, with backoff (devstack/supervisor.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import toolfabric
from toolfabric_server.catalog import full_catalog
from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.tools import SERVICES
from toolfabric_server.devstack import neural_models
from toolfabric_server.devstack.model_endpoint import ModelEndpoint
from toolfabric_server.devstack.processes import PORT_TAKEN, Child, free_port, log_says, wait_until
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.devstack.triton_server import CPU_MODELS, REPOSITORY, TritonServer
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.tools.mcp.settings import McpClientSettings
from toolfabric_server.web.settings import FetchSettings

DEMO_DIR = Path(toolfabric.__file__).resolve().parent / "demo"


class EmbeddedStack:
    def __init__(self, workdir: Path, *, gateway_port: int | None = None, demo_site: bool = True,
                 extra_env: dict[str, str] | None = None, worker_concurrency: int = 2,
                 triton: TritonServer | None = None, data_dir: Path | None = None,
                 model: str | None = None, step_port: int | None = None, mcp_port: int | None = None,
                 model_endpoint: ModelEndpoint | None = None, extra_models: tuple[str, ...] = (),
                 cache_redis_mb: int = 0, also_serve: tuple[str, ...] = ()) -> None:
        self.workdir = workdir.resolve()
        # The user's data directory (their own index) when given; else a fresh one in the workdir.
        self.user_data = data_dir is not None
        self.data_dir = (data_dir or self.workdir / "data").resolve()
        self.gateway_port = gateway_port or free_port()
        # Ports the user chose are kept; the stack's own choices are made again if someone takes them first.
        self._fixed_gateway_port, self._fixed_step_port, self._fixed_mcp_port = bool(gateway_port), bool(step_port), \
            bool(mcp_port)
        self.demo_site = demo_site
        self.extra_env = extra_env or {}
        self.worker_concurrency = worker_concurrency
        self.redis = RedisServer(self.workdir / "redis", persistent=True)
        # Production's split by role, when asked: image blobs and the hot cache in a Redis of their own, bounded
        # to `cache_redis_mb` and evicting (LRU); the broker and trajectories stay in the durable one.
        self.cache_redis = RedisServer(self.workdir / "redis-cache", maxmemory_mb=cache_redis_mb,
                                       policy="allkeys-lru") if cache_redis_mb else None
        # The CPU baseline by default; tests hand in a server that also loads their test models. A tiny neural model
        # (`toolfabric up --model tiny-qwen3`) is served beside it and becomes the default model.
        # `also_serve`: more neural models (tiny names or checkpoint directories) Runs can name, e.g. the
        # flywheel's trained and untrained checkpoints side by side.
        # Where the tiny checkpoints are cached and which venv runs the engines: read as the stack is made.
        self.model_settings = ModelSettings()
        self.model = neural_models.resolve(model) if model and model != "baseline" else None
        self.also_serve = [neural_models.resolve(m) for m in also_serve]
        # Or the default model comes from a completions server already running (`up --model-endpoint URL`).
        self.model_endpoint = model_endpoint
        if self.model is not None and model_endpoint is not None:
            raise ConfigurationError(f"--model {model} and --model-endpoint both name the default model: choose one")
        served = [m for m in (self.model, *self.also_serve) if m is not None]
        if triton is None and served:
            repo = self.workdir / "model-repository"
            names = neural_models.write_repository(repo, list(served), self.model_settings)
            triton = TritonServer(self.workdir / "triton", models=(*CPU_MODELS, *names, *extra_models),
                                  repositories=(REPOSITORY, repo), start_timeout_s=900)
        # extra_models: other models of the shipped repository to serve too (the eval judge).
        self.triton = triton or TritonServer(self.workdir / "triton", models=(*CPU_MODELS, *extra_models))
        self.site_port = free_port()
        self.blob_port = free_port()
        self.http_port = free_port()  # the OpenAI-compatible HTTP API
        # The step API (verl-tool's /get_observation) and the MCP endpoint, when asked (0 = any free port).
        self.step_port = (step_port or free_port()) if step_port is not None else None
        self.mcp_port = (mcp_port or free_port()) if mcp_port is not None else None
        self.doors_file = self.workdir / "doors.json"  # the gateway lists what it serves here
        # Signs blob URLs; the stack's own random one, so a stack with auth on starts without setting it.
        self.blob_secret = secrets.token_urlsafe(32)
        self.left_out: dict[str, str] = {}  # plugin services whose worker could not start → why
        # Prometheus endpoints: the gateway's and one per worker (its main process serves its pool's).
        # Built-in services and every installed plugin's (the ocr example among them).
        # (and the MCP worker's when MCP servers are configured: their tools listed now, as the gateway will)
        self.services = full_catalog(McpClientSettings(), FetchSettings()).services()
        self.metrics_ports = {name: free_port() for name in ("gateway", *self.services)}
        self.children: dict[str, Child] = {}

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.site_port}/"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "TOOLFABRIC_REDIS_URL": self.redis.url,
            "TOOLFABRIC_CACHE_REDIS_URL": self.cache_redis.url if self.cache_redis else "",
            "TOOLFABRIC_DATA_DIR": str(self.data_dir),
            "TOOLFABRIC_MODEL_TRITON_URL": self.triton.grpc_url,
            "TOOLFABRIC_GATEWAY_HOST": "127.0.0.1",
            "TOOLFABRIC_GATEWAY_PORT": str(self.gateway_port),
            "TOOLFABRIC_WORKER_CONCURRENCY": str(self.worker_concurrency),
            # The gateway serves blobs at signed URLs here, for providers that fetch images by URL.
            "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": str(self.blob_port),
            "TOOLFABRIC_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.blob_port}",
            "TOOLFABRIC_HTTP_HOST": "127.0.0.1",
            "TOOLFABRIC_HTTP_PORT": str(self.http_port),
            "TOOLFABRIC_GATEWAY_DOORS_FILE": str(self.doors_file),
            "PYTHONUNBUFFERED": "1",
        })
        env.setdefault("TOOLFABRIC_BLOB_URL_SECRET", self.blob_secret)
        if self.step_port is not None:
            env["TOOLFABRIC_STEP_HTTP_PORT"] = str(self.step_port)
        if self.mcp_port is not None:
            env["TOOLFABRIC_MCP_HTTP_PORT"] = str(self.mcp_port)
        if self.model is not None:
            env.update(neural_models.gateway_env(self.model_settings, self.model, *self.also_serve))
        elif self.also_serve:
            env.update({k: v for k, v in neural_models.gateway_env(self.model_settings, *self.also_serve).items()
                        if k != "TOOLFABRIC_MODEL_DEFAULT_MODEL"})  # the baseline stays the default
        if self.model_endpoint is not None:
            env.update(self.model_endpoint.gateway_env())
        if self.demo_site:
            # The demo corpus is served on loopback: allow that host:port too, beside what the user allows.
            hosts = _env_list(env.get("TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST"), [])
            ports = [int(p) for p in _env_list(env.get("TOOLFABRIC_FETCH_ALLOWED_PORTS"), [80, 443])]
            env["TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST"] = json.dumps(
                list(dict.fromkeys([*hosts, f"127.0.0.1:{self.site_port}"])))
            env["TOOLFABRIC_FETCH_ALLOWED_PORTS"] = json.dumps(list(dict.fromkeys([*ports, self.site_port])))
        env.update(self.extra_env)
        return env

    def start(self, progress: bool = False) -> EmbeddedStack:
        def say(message: str) -> None:
            if progress:
                print(f"[toolfabric up] {message}", file=sys.stderr, flush=True)

        started = time.monotonic()
        try:
            say("starting redis-server")
            self.redis.start()
            if self.cache_redis is not None:
                self.cache_redis.start()
            say("starting Triton with the CPU baseline policy" + (
                f" and {self.model.name} ({self.model.engine} engine; loading takes a minute or two)"
                if self.model else ""))
            self.triton.start()
            if self.demo_site:
                say(f"serving the demo corpus at {self.site_url}")
                self._spawn("demo-site", self._site_argv(), self.env())
                self._ready_or_respawn("demo-site", self._site_argv, self.env, lambda: _http_ok(self.site_url), 15,
                                       lambda: setattr(self, "site_port", free_port()))
                if self.user_data:  # never mix the demo pages into the user's own index
                    say(f"not indexing the demo corpus into your index in {self.data_dir}")
                else:
                    say("indexing the demo corpus into the local search index")
                    self._index_demo(self.env())
            # The gateway first: if a port chosen free was taken meanwhile it starts again on new ones, and the
            # workers then get the blob port it really serves (their signed image URLs point there).
            if self.model_endpoint is not None:
                say(f"the default model is {self.model_endpoint.model} on the completions server at "
                    f"{self.model_endpoint.url}")
            say("starting the gateway")
            gateway = [sys.executable, "-m", "toolfabric.cli.main", "gateway"]

            def gateway_env() -> dict[str, str]:
                return {**self.env(), "TOOLFABRIC_GATEWAY_METRICS_PORT": str(self.metrics_ports["gateway"])}

            self._spawn("gateway", gateway, gateway_env())
            self._ready_or_respawn("gateway", lambda: gateway, gateway_env, self._gateway_serving, 60,
                                   self._new_gateway_ports)
            env = self.env()

            def worker_argv(service: str) -> list[str]:
                return [sys.executable, "-m", "toolfabric.cli.main", "worker", service]

            def worker_env(service: str) -> dict[str, str]:
                return {**env, "TOOLFABRIC_TELEMETRY_METRICS_PORT": str(self.metrics_ports[service])}

            for service in self.services:
                say(f"starting the {service} worker")
                self._spawn(f"worker-{service}", worker_argv(service), worker_env(service))
            for service in list(self.services):
                try:
                    self._ready_or_respawn(
                        f"worker-{service}", functools.partial(worker_argv, service),
                        functools.partial(worker_env, service),
                        functools.partial(_worker_ready, self.redis.url, service), 60,
                        functools.partial(self._new_metrics_port, service))
                except (RuntimeError, TimeoutError) as exc:
                    if service in SERVICES:  # the fabric's own services must run
                        raise
                    # A plugin that fails to import or start is reported and left out; the rest runs (its
                    # tools answer `unavailable`, the gateway's fail-fast for a queue with no consumer).
                    child = self.children.pop(f"worker-{service}")
                    child.stop()
                    self.services.remove(service)
                    self.left_out[service] = f"{str(exc).splitlines()[0]}: {_last_error(child.log)}"
                    say(f"plugin {service} left out: {self.left_out[service]} (log: {child.log})")
        except BaseException:
            self.stop()
            raise
        say(f"ready in {time.monotonic() - started:.1f}s: gateway at {self.target}")
        return self

    def _index_demo(self, env: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "toolfabric.cli.main", "index", str(DEMO_DIR / "site"),
                "--base-url", self.site_url, "--no-progress"]
        child = Child("index-demo", argv, self.workdir / "logs", env=env)
        code = child.proc.wait(300)
        child.stop()
        if code != 0:
            raise RuntimeError(f"indexing the demo corpus failed (exit {code}); see {child.log}")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children[name] = Child(name, argv, self.workdir / "logs", env=env, cwd=self.workdir)

    def _site_argv(self) -> list[str]:
        return [sys.executable, "-m", "http.server", str(self.site_port), "--bind", "127.0.0.1", "--directory",
                str(DEMO_DIR / "site")]

    def _ready_or_respawn(self, name: str, argv: Callable[[], list[str]], env: Callable[[], dict[str, str]],
                          ready: Callable[[], bool], timeout_s: float, new_ports: Callable[[], None]) -> None:
        """Wait until a spawned child is ready; when it died because a port chosen free was taken by someone
        else meanwhile (several stacks on one machine), choose new ports and start it again (twice at most)."""
        for attempt in range(3):
            child = self.children[name]
            try:
                wait_until(ready, timeout_s, name, child.proc, child.log)
                return
            except RuntimeError:
                if attempt == 2 or not log_says(child.log, *PORT_TAKEN):
                    raise
                child.stop()
                child.log.rename(child.log.with_suffix(f".port-taken-{attempt + 1}.log"))
                new_ports()
                self._spawn(name, argv(), env())

    def _new_metrics_port(self, name: str) -> None:
        self.metrics_ports[name] = free_port()

    def _new_gateway_ports(self) -> None:
        if not self._fixed_gateway_port:
            self.gateway_port = free_port()
        self.blob_port, self.http_port, self.metrics_ports["gateway"] = free_port(), free_port(), free_port()
        if self.step_port is not None and not self._fixed_step_port:
            self.step_port = free_port()
        if self.mcp_port is not None and not self._fixed_mcp_port:
            self.mcp_port = free_port()

    def _gateway_serving(self) -> bool:
        with grpc.insecure_channel(self.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def alive(self) -> dict[str, bool]:
        return {name: child.alive() for name, child in self.children.items()}

    def restart_worker(self, service: str) -> None:
        """Start a service's worker again (after it died or was killed), with the same settings."""
        self.children[f"worker-{service}"].respawn()

    def stop(self) -> None:
        # Gateway first (it stops dispatching), then workers, then the servers they need.
        for name in ["gateway", *[f"worker-{s}" for s in self.services], "demo-site"]:
            child = self.children.pop(name, None)
            if child:
                child.stop()
        for child in self.children.values():
            child.stop()
        self.children.clear()
        self.triton.stop()
        self.redis.stop()
        if self.cache_redis is not None:
            self.cache_redis.stop()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _env_list(raw: str | None, default: list[Any]) -> list[Any]:
    """A list setting as the user gave it in the environment: JSON, else comma-separated."""
    if not raw or not raw.strip():
        return list(default)
    try:
        value = json.loads(raw)
    except ValueError:
        value = [x.strip() for x in raw.split(",") if x.strip()]
    return value if isinstance(value, list) else [value]


def _last_error(log: Path) -> str:
    """The line of a crashed process's log that says why (its last error line, else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()] \
        if log.exists() else []
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["(no log)"])[-1][:300]


def _http_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=1).status_code == 200


def _worker_ready(redis_url: str, service: str) -> bool:
    """A `ping` through the service's queue comes back: broker, worker and result backend all work."""
    from celery import Celery

    from toolfabric_server.common.tools import task_name

    app = Celery("toolfabric-probe", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    result = None
    try:
        result = app.send_task(task_name(service), args=["ping", {}, {}], queue=service)
        return bool(result.get(timeout=2).get("ok"))
    finally:
        if result is not None:
            # Unsubscribe now, while Redis is up; AsyncResult.__del__ would do it whenever the garbage collector
            # runs, possibly after Redis stopped (an unraisable ConnectionError at the end of a test session).
            with contextlib.suppress(Exception):
                app.backend.remove_pending_result(result)
        app.close()
