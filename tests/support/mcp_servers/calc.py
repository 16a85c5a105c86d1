"""An MCP server with well-behaved tools and each kind of misbehaviour, over stdio or streamable HTTP.

    python calc.py               stdio
    python calc.py --http PORT   streamable HTTP at http://127.0.0.1:PORT/mcp
    python calc.py --hang        never answers anything (not even initialize)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import zlib
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


NUMBERS = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
           "required": ["a", "b"], "additionalProperties": False}
EMPTY = {"type": "object", "properties": {}}
TOOLS = [
    types.Tool(name="add", description="Add two numbers.", input_schema=NUMBERS),
    types.Tool(name="picture", description="A small red picture.", input_schema=EMPTY),
    types.Tool(name="fails", description="Always reports an error.", input_schema=EMPTY),
    types.Tool(name="hang", description="Never returns.", input_schema=EMPTY),
    types.Tool(name="crash", description="Exits in the middle of the call.", input_schema=EMPTY),
    types.Tool(name="huge", description="Returns two million characters.", input_schema=EMPTY),
    # Lies about its schema: not a valid JSON schema.
    types.Tool(name="broken", description="Schema nonsense.",
               input_schema={"type": "object", "properties": {"x": {"type": "nonsense"}}}),
    types.Tool(name="not a name!", description="A name no function call can use.", input_schema=EMPTY),
]


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    if params.name == "add":
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(args["a"] + args["b"]))])
    if params.name == "picture":
        return types.CallToolResult(content=[
            types.TextContent(type="text", text="here it is"),
            types.ImageContent(type="image", data=base64.b64encode(png(16, 12)).decode(), mime_type="image/png")])
    if params.name == "fails":
        return types.CallToolResult(content=[types.TextContent(type="text", text="division by zero")], is_error=True)
    if params.name == "hang":
        await asyncio.sleep(3600)
    if params.name == "crash":
        os._exit(3)
    if params.name == "huge":
        return types.CallToolResult(content=[types.TextContent(type="text", text="x" * 2_000_000)])
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"no tool {params.name}")],
                                is_error=True)


server: Server[Any] = Server("calc", on_list_tools=list_tools, on_call_tool=call_tool)


async def stdio() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    if args.hang:
        sys.stdin.read()  # reads, never answers
        return
    if args.http:
        import uvicorn

        uvicorn.run(server.streamable_http_app(host="127.0.0.1"), host="127.0.0.1", port=args.http,
                    log_level="warning")
        return
    asyncio.run(stdio())


if __name__ == "__main__":
    main()
