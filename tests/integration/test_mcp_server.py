"""The fabric as an MCP server, driven by the official SDK's own client over both transports."""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.client.streamable_http import streamable_http_client

from tests.integration.conftest import extra_gateway
from toolfabric_server.devstack.processes import free_port, port_open, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration

Connect = Callable[[], AbstractAsyncContextManager[ClientSession]]


@pytest.fixture(scope="module")
def mcp_url(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    with extra_gateway(stack, tmp_path_factory.mktemp("mcp-gateway"), TOOLFABRIC_MCP_HTTP_PORT=str(port)):
        wait_until(lambda: port_open(port), 30, "MCP HTTP endpoint")
        yield f"http://127.0.0.1:{port}/mcp"


def over_http(url: str) -> Connect:
    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
    return connect


def over_stdio(stack: EmbeddedStack, log: Path) -> Connect:
    params = StdioServerParameters(command=sys.executable, args=["-m", "toolfabric.cli.main", "mcp"],
                                   env=stack.env())

    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:
        with log.open("a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                yield session
    return connect


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest, stack: EmbeddedStack, tmp_path: Path) -> Connect:
    if request.param == "http":
        return over_http(request.getfixturevalue("mcp_url"))
    return over_stdio(stack, tmp_path / "mcp-stdio.log")


def texts(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def test_every_tool_is_advertised_with_its_json_schema(connect: Connect) -> None:
    async with connect() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert {"code", "crop", "text_search", "web_visit", "image_search", "add_image"} <= set(tools)
    assert "ping" not in tools  # hidden diagnostics stay hidden
    crop = tools["crop"].input_schema
    assert crop["type"] == "object" and "bbox" in crop["properties"] and "bbox" in crop["required"]


async def test_a_session_keeps_its_images_and_returns_new_ones_as_image_content(connect: Connect,
                                                                                demo_dir: Path) -> None:
    photo = base64.b64encode((demo_dir / "question.jpg").read_bytes()).decode()
    async with connect() as session:
        added = await session.call_tool("add_image", {"data": photo})
        assert not added.is_error and texts(added).startswith("added <image 1> (")
        made = await session.call_tool("code", {"code": "save(cv2.flip(image, 1), 'mirrored')"})
        assert not made.is_error, texts(made)
        [picture] = [c for c in made.content if isinstance(c, types.ImageContent)]
        assert picture.mime_type == "image/png" and base64.b64decode(picture.data)[:4] == b"\x89PNG"
        assert "<sub-image 1>" in texts(made)
        # A later call uses the earlier call's image by name.
        cropped = await session.call_tool("crop", {"image": "<sub-image 1>", "bbox": [0, 0, 64, 48]})
        assert not cropped.is_error and "<sub-image 2> (64x48" in texts(cropped)

    async with connect() as other:  # a new session has images of its own: none
        missing = await other.call_tool("crop", {"image": "<sub-image 1>", "bbox": [0, 0, 64, 48]})
        assert missing.is_error and "unknown image" in texts(missing)


async def test_bad_calls_are_error_results_and_the_session_goes_on(connect: Connect) -> None:
    async with connect() as session:
        bad = await session.call_tool("crop", {"bbox": "nope"})
        assert bad.is_error and texts(bad).startswith("error (invalid_argument): invalid arguments for crop")
        unknown = await session.call_tool("teleport", {})
        assert unknown.is_error and "unknown tool 'teleport'" in texts(unknown)
        not_image = await session.call_tool("add_image", {"data": "%%%"})
        assert not_image.is_error and "not base64" in texts(not_image)
        corrupt = await session.call_tool("add_image", {"data": base64.b64encode(b"\x89PNG broken").decode()})
        assert corrupt.is_error and "image 1" in texts(corrupt)
        fine = await session.call_tool("code", {"code": "print(6 * 7)"})
        assert not fine.is_error and "42" in texts(fine)
