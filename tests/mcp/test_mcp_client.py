"""The fabric as an MCP client, against a real MCP server process (tests/support/mcp_servers/calc.py):
tools join the catalog under the server's namespace and run on the `mcp` worker queue; servers that
hang, crash, lie about their schema or answer too much cost only their own calls."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from tests.support.executor import celery_executor
from toolfabric_server.common import images
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.ports import ToolInvocation
from toolfabric_server.gateway.celery_executor import CeleryToolExecutor
from toolfabric_server.tools.mcp.calls import call
from toolfabric_server.tools.mcp.catalog import list_tools
from toolfabric_server.tools.mcp.connect import guard_settings
from toolfabric_server.tools.mcp.settings import McpClientSettings, McpServer
from toolfabric_server.web.settings import FetchSettings

pytestmark = pytest.mark.integration

CALC = str(Path(__file__).resolve().parents[1] / "support" / "mcp_servers" / "calc.py")


def stdio(*extra: str, timeout_s: float = 30) -> McpServer:
    return McpServer(command=[sys.executable, CALC, *extra], timeout_s=timeout_s)


def test_tools_join_the_catalog_under_the_namespace_and_bad_ones_are_left_out() -> None:
    tools, problems = list_tools(McpClientSettings(
        servers={"calc": stdio(), "gone": McpServer(command=["/nonexistent/server"])}, list_timeout_s=60),
        FetchSettings())
    by_name = {t.spec.name: t for t in tools}
    assert sorted(by_name) == ["calc.add", "calc.crash", "calc.fails", "calc.hang", "calc.huge", "calc.picture"]
    add = by_name["calc.add"]
    assert (add.spec.service, add.server, add.tool) == ("mcp", "calc", "add")
    assert add.spec.json_schema()["required"] == ["a", "b"]  # the server's own schema, advertised as is
    assert add.spec.arguments.model_validate({"a": 2, "b": 3}).model_dump(mode="json") == {"a": 2, "b": 3}
    with pytest.raises(ValidationError, match="b: 'three' is not of type 'number'"):
        add.spec.arguments.model_validate({"a": 2, "b": "three"})
    assert sorted(problems) == sorted([
        "MCP server 'calc': tool 'broken' left out: its input schema is invalid: 'nonsense' is not valid under "
        "any of the given schemas",
        "MCP server 'calc': tool 'not a name!' left out: not a usable tool name",
        "MCP server 'gone' left out: listing its tools failed: FileNotFoundError: [Errno 2] No such file or "
        "directory: '/nonexistent/server'",
    ])
    # A server that never answers costs the listing its timeout, nothing more.
    assert list_tools(McpClientSettings(servers={"mute": stdio("--hang")}, list_timeout_s=3), FetchSettings()) == (
        [], ["MCP server 'mute' left out: it did not list its tools within 3s"])


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    # Each call starts the server (a Python process): the timeout leaves room for that on a loaded machine.
    servers = {"calc": {"command": [sys.executable, CALC], "timeout_s": 15}}
    env = {**__import__("os").environ, "TOOLFABRIC_REDIS_URL": redis_server.url,
           "TOOLFABRIC_WORKER_CONCURRENCY": "2", "TOOLFABRIC_MCP_CLIENT_SERVERS": json.dumps(servers),
           "TOOLFABRIC_MCP_CLIENT_MAX_RESULT_CHARS": "1000"}
    child = Child("worker-mcp", [sys.executable, "-m", "toolfabric.cli.main", "worker", "mcp"],
                  tmp_path_factory.mktemp("worker-mcp"), env=env)
    try:
        yield child
    finally:
        child.stop()


@pytest.fixture
async def executor(redis_server: RedisServer, worker: Child) -> AsyncIterator[CeleryToolExecutor]:
    async with celery_executor(redis_server.url) as executor:
        yield executor


async def run(executor: CeleryToolExecutor, tool: str, arguments: dict[str, object] | None = None) -> ToolResult:
    context = ToolContext(trajectory_id="t", call_id="c")
    return await executor.call(ToolInvocation("mcp", tool, arguments or {}, context, timeout_s=90))


async def test_mcp_worker_runs_tools_and_turns_every_misbehaviour_into_an_observation(
        executor: CeleryToolExecutor, worker: Child, redis_client: redis.Redis) -> None:
    assert (await run(executor, "calc.add", {"a": 2, "b": 3})).text == "5"
    picture = await run(executor, "calc.picture")
    assert picture.ok and picture.text == "here it is"
    [image] = picture.images
    assert (image.width, image.height, image.origin) == (16, 12, "calc.picture image 1")
    assert images.inspect(BlobStore(redis_client, 60).get(image.ref), 10**6).format == "PNG"

    failed = await run(executor, "calc.fails")
    assert (failed.ok, failed.error_kind) == (False, "tool_error") and "division by zero" in failed.text
    hung = await run(executor, "calc.hang")
    assert hung.error_kind == "timeout" and "gave no result for hang within 15s" in hung.text
    crashed = await run(executor, "calc.crash")
    assert crashed.error_kind == "unavailable" and "MCP server 'calc' failed on crash" in crashed.text
    huge = await run(executor, "calc.huge")
    assert huge.ok and len(huge.text) < 1200 and "the result had 2000000 characters, the limit is 1000" in huge.text
    invalid = await run(executor, "calc.add", {"a": 1})
    assert invalid.error_kind == "invalid_argument" and "'b' is a required property" in invalid.text

    assert (await run(executor, "calc.add", {"a": 40, "b": 2})).text == "42"  # still serving
    assert worker.alive()


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    child = Child("mcp-http", [sys.executable, CALC, "--http", str(port)], tmp_path_factory.mktemp("mcp-http"))
    try:
        wait_until(lambda: port_open(port), 30, "MCP HTTP server", child.proc, child.log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        child.stop()


async def test_http_servers_go_through_the_ssrf_guard(http_server: str, redis_server: RedisServer) -> None:
    server = McpServer(url=http_server, timeout_s=10)
    _, problems = list_tools(McpClientSettings(servers={"local": server}), FetchSettings())
    assert len(problems) == 1 and "refused http://127.0.0.1:" in problems[0] and "loopback" in problems[0]

    host = http_server.split("/")[2]
    client = McpClientSettings(servers={"local": server}, private_host_allowlist=[host])
    tools, problems = list_tools(client, FetchSettings())
    assert problems == [
        "MCP server 'local': tool 'broken' left out: its input schema is invalid: 'nonsense' is not valid "
        "under any of the given schemas",
        "MCP server 'local': tool 'not a name!' left out: not a usable tool name"]
    assert "local.add" in {t.spec.name for t in tools}
    guard = guard_settings(FetchSettings(), client)
    assert (await call("local", server, "add", {"a": 1.5, "b": 2}, client, guard,
                       CommonSettings(redis_url=redis_server.url))).text == "3.5"
