"""Several gateway processes on one host (issue 22, item 5): with TOOLFABRIC_GATEWAY_REUSE_PORT they share every
port — gRPC, chat HTTP, step, MCP, blob — each process listening on each; one stopping leaves the others
serving. Without it a taken port fails the start and names the port's trouble (the embedded stack then chooses
new ports: tests/faults/test_redis_split.py)."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from toolfabric_server.devstack.processes import Child, free_port, log_says, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
DOORS = ("TOOLFABRIC_GATEWAY_PORT", "TOOLFABRIC_HTTP_PORT", "TOOLFABRIC_STEP_HTTP_PORT", "TOOLFABRIC_MCP_HTTP_PORT",
         "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT")


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (its socket inodes matched against /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@contextlib.contextmanager
def gateways(stack: EmbeddedStack, workdir: Path, count: int, ports: dict[str, int],
             **settings: str) -> Iterator[list[Child]]:
    env = stack.env() | {k: str(v) for k, v in ports.items()} | settings
    # Each lists its doors in a file of its own (not the stack's) once every door listens.
    started = [Child(f"gateway-{i}", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], workdir,
                     env=env | {"TOOLFABRIC_GATEWAY_DOORS_FILE": str(workdir / f"doors-{i}.json")})
               for i in range(count)]
    try:
        yield started
    finally:
        for child in started:
            child.stop()


def serving(child: Child) -> bool:
    return (child.log.parent / f"doors-{child.name.rsplit('-', 1)[1]}.json").exists()


def health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def test_gateway_processes_with_reuse_port_share_every_door_and_survive_each_other(
        fault_stack: EmbeddedStack, tmp_path: Path) -> None:
    ports = {name: free_port() for name in DOORS}
    with gateways(fault_stack, tmp_path, 2, ports, TOOLFABRIC_GATEWAY_REUSE_PORT="true") as (first, second):
        for child in (first, second):
            wait_until(lambda c=child: serving(c), 60, child.name, child.proc, child.log)  # type: ignore[misc]
        for child in (first, second):  # every door, in every process
            assert set(ports.values()) <= listening_ports(child.proc.pid), (child.name, ports)
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(30)
        # The survivor answers on every door the stopped one shared.
        assert health(ports["TOOLFABRIC_GATEWAY_PORT"]) == health_pb2.HealthCheckResponse.SERVING
        http = ports["TOOLFABRIC_HTTP_PORT"]
        assert httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['TOOLFABRIC_STEP_HTTP_PORT']}/health", timeout=5).status_code == 200
        blob = httpx.get(f"http://127.0.0.1:{ports['TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT']}/blobs/" + "0" * 64, timeout=5)
        assert blob.status_code == 403  # unsigned: refused, by a live blob door
        assert second.alive()


def test_without_reuse_port_a_taken_port_fails_the_start_saying_so(
        fault_stack: EmbeddedStack, tmp_path: Path) -> None:
    ports = {name: free_port() for name in DOORS}
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # sharing would be possible: it must not happen
    squatter.bind(("127.0.0.1", ports["TOOLFABRIC_HTTP_PORT"]))
    squatter.listen()
    try:
        with gateways(fault_stack, tmp_path, 1, ports) as (gateway,):
            assert gateway.proc.wait(60) != 0
            assert log_says(gateway.log, "address already in use"), gateway.log.read_text()[-2000:]
    finally:
        squatter.close()

