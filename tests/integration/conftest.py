"""The whole fabric, for real: redis-server, Triton with the CPU models, three Celery worker
processes, the gateway and the demo corpus site — started once per test session."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_repository import triton_with_test_models
from tests.support.otlp_receiver import OtlpReceiver
from toolfabric import Client
from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """Every process of the stack exports its spans here (test_telemetry reads them)."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, otlp_receiver: OtlpReceiver) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(workdir, extra_env=otlp_receiver.env(), triton=triton_with_test_models(workdir)) as running:
        yield running


@pytest.fixture
def client(stack: EmbeddedStack) -> Iterator[Client]:
    with Client(stack.target, timeout_s=120) as c:
        yield c


@contextlib.contextmanager
def extra_gateway(stack: EmbeddedStack, workdir: Path, ready_s: float = 30, **settings: str) -> Iterator[str]:
    """A second gateway process on the running stack's Redis, Triton and workers, with `settings` (env) on top;
    yields its address. `ready_s`: how long it may take to listen (its catalog may list MCP servers first)."""
    port = free_port()
    env = stack.env() | {"TOOLFABRIC_GATEWAY_PORT": str(port), "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": "0",
                         "TOOLFABRIC_HTTP_PORT": "0"} | settings
    gateway = Child(f"gateway-{port}", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], workdir, env=env)
    try:
        wait_until(lambda: port_open(port), ready_s, "extra gateway", gateway.proc, gateway.log)
        yield f"127.0.0.1:{port}"
    finally:
        gateway.stop()
