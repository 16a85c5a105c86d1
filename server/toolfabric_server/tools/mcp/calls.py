"""One call of an MCP server's tool, bounded: a timeout, a cap on text and images, errors as results."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from mcp import types
from opentelemetry import trace

from toolfabric_server.common import images, redis_clients
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.errors import InvalidImage, ToolTimeout
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import NewImage, ToolResult
from toolfabric_server.tools.mcp.connect import session
from toolfabric_server.tools.mcp.errors import McpServerFailed, McpToolFailed
from toolfabric_server.tools.mcp.settings import McpClientSettings, McpServer
from toolfabric_server.web.settings import FetchSettings

tracer = trace.get_tracer("toolfabric.mcp")


async def call(name: str, server: McpServer, tool: str, arguments: dict[str, Any], cfg: McpClientSettings,
               guard: FetchSettings, common: CommonSettings) -> ToolResult:
    """`tool` of server `name`; `guard`: the SSRF guard's settings (tools.mcp.connect.guard_settings)."""
    attributes = {"toolfabric.mcp.server": name, "gen_ai.tool.name": f"{name}.{tool}",
                  "toolfabric.mcp.transport": "stdio" if server.command else "http"}
    with tracer.start_as_current_span(f"mcp {name}.{tool}", kind=trace.SpanKind.CLIENT, attributes=attributes):
        try:
            async with asyncio.timeout(server.timeout_s), session(server, guard) as mcp:
                result = await mcp.call_tool(tool, arguments)
        except TimeoutError:
            raise ToolTimeout(f"MCP server {name!r} gave no result for {tool} within {server.timeout_s:g}s") from None
        except Exception as exc:  # crashed, unreachable, refused by the guard, protocol error
            raise McpServerFailed(f"MCP server {name!r} failed on {tool}: {_describe(exc)}") from None
    return _result(name, tool, result, cfg, common)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}"[:500]


def _result(name: str, tool: str, result: types.CallToolResult, cfg: McpClientSettings,
            common: CommonSettings) -> ToolResult:
    texts: list[str] = []
    new: list[NewImage] = []
    blobs = BlobStore(redis_clients.sync_client("cache", common), common.blob_ttl_s)
    for block in result.content:
        if isinstance(block, types.TextContent):
            texts.append(block.text)
        elif isinstance(block, types.ImageContent) and len(new) < cfg.max_result_images:
            try:
                data = base64.b64decode(block.data, validate=True)
                if len(data) > common.max_image_bytes:
                    raise InvalidImage(f"{len(data)} bytes, over the limit of {common.max_image_bytes}")
                info = images.inspect(data, common.max_image_pixels, common.max_image_pixels_per_byte)
            except (binascii.Error, ValueError, InvalidImage) as exc:
                texts.append(f"[an image the server sent was unusable: {exc}]")
                continue
            new.append(NewImage(ref=blobs.put(data), width=info.width, height=info.height,
                                origin=f"{name}.{tool} image {len(new) + 1}", mime_type=info.mime_type))
        else:
            texts.append(f"[{block.type} content left out]")
    text = "\n".join(texts)
    if len(text) > cfg.max_result_chars:
        text = text[: cfg.max_result_chars] + (f"\n… (cut: the result had {len(text)} characters, the limit is "
                                              f"{cfg.max_result_chars}, TOOLFABRIC_MCP_CLIENT_MAX_RESULT_CHARS)")
    if result.is_error:
        raise McpToolFailed(text or "the server reported an error without a message")
    return ToolResult(text=text, images=new, data=result.structured_content)
