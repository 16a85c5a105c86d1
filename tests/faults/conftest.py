"""A stack of its own for the fault suite (its parts get killed), with timeouts shortened through settings:
leases of 3 s, worker heartbeats every 0.5 s (gone after 2 s), 1 s to find a consumer, 1 s of shutdown grace,
5 s for a task taken from the queue to start."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_repository import triton_with_test_models
from toolfabric import Client
from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

FAST = {
    "TOOLFABRIC_GATEWAY_LEASE_TTL_S": "3",
    "TOOLFABRIC_GATEWAY_REAPER_INTERVAL_S": "0.5",
    "TOOLFABRIC_GATEWAY_NO_CONSUMER_WAIT_S": "1",
    "TOOLFABRIC_GATEWAY_UNSTARTED_TIMEOUT_S": "5",
    "TOOLFABRIC_GATEWAY_SHUTDOWN_GRACE_S": "1",
    "TOOLFABRIC_GATEWAY_RECORD_RETRY_S": "60",
    "TOOLFABRIC_GATEWAY_TOOL_TIMEOUT_S": "60",
    "TOOLFABRIC_WORKER_HEARTBEAT_INTERVAL_S": "0.5",
    "TOOLFABRIC_WORKER_HEARTBEAT_TTL_S": "2",
    "TOOLFABRIC_MODEL_STREAM_IDLE_TIMEOUT_S": "20",
    "TOOLFABRIC_MODEL_RECONNECT_BACKOFF_MAX_S": "1",
}


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("fault-stack")
    with EmbeddedStack(workdir, demo_site=False, extra_env=FAST, worker_concurrency=1,
                       triton=triton_with_test_models(workdir)) as running:
        yield running


@pytest.fixture
def fault_client(fault_stack: EmbeddedStack) -> Iterator[Client]:
    with Client(fault_stack.target, timeout_s=120) as c:
        yield c


def script(*steps: object) -> str:
    """A question for the scripted model: it replays `steps` as its model steps."""
    return json.dumps({"script": list(steps)})


def code_call(code: str) -> str:
    return "<tool_call>" + json.dumps({"name": "code", "arguments": {"code": code}}) + "</tool_call>"


def kill_group(pid: int | None, sig: int = signal.SIGKILL) -> None:
    """Kill a child's whole process group (a worker with its pool, Triton with its stubs)."""
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


@contextlib.contextmanager
def gateway_process(stack: EmbeddedStack, workdir: Path, **settings: str) -> Iterator[tuple[str, Child]]:
    """Another gateway process on the stack's Redis, Triton and workers; yields its address and process."""
    port = free_port()
    # The stack's own gateway holds the HTTP doors' ports: this one serves gRPC only.
    env = stack.env() | {"TOOLFABRIC_GATEWAY_PORT": str(port), "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": "0",
                         "TOOLFABRIC_HTTP_PORT": "0", "TOOLFABRIC_STEP_HTTP_PORT": "0",
                         "TOOLFABRIC_MCP_HTTP_PORT": "0"} | settings
    gateway = Child(f"gateway-{port}", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], workdir, env=env)
    try:
        wait_until(lambda: port_open(port), 30, "extra gateway", gateway.proc, gateway.log)
        yield f"127.0.0.1:{port}", gateway
    finally:
        gateway.stop()


def wait_for(check, timeout_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Poll until `check()` holds; returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout_s}s")
