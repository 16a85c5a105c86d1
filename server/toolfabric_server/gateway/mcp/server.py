"""The fabric's tools as an MCP server, one trajectory per MCP session.

Each session is a step-API trajectory (gateway/stepping): a `tools/call` runs through the same path as a
Run's calls (argument validation, Celery, tracing, metrics, caching, the recorder), and the session's
image registry lives with the trajectory, so a later call can use an earlier call's image by name
(`<sub-image 1>`). A client brings its own images with the `add_image` tool (they become `<image 1>`,
`<image 2>`, …). Images a tool makes come back as MCP image content. Tool errors are results with
`isError` and the fabric's error text, never protocol errors.
"""

from __future__ import annotations

import base64
import binascii
import uuid
import weakref
from typing import Any

from mcp import types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel import Server
from starlette.types import ASGIApp, Receive, Scope, Send

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.errors import BlobNotFound
from toolfabric_server.common.tools import Catalog
from toolfabric_server.gateway.exceptions import LimitExceeded
from toolfabric_server.gateway.mcp.settings import McpSettings
from toolfabric_server.gateway.policy.http import principal_in, principal_of
from toolfabric_server.gateway.stepping import StepItem, StepService
from toolfabric_server.model.dialect import RawCall

_MAX_HTTP_SESSIONS = 10_000
ADD_IMAGE = types.Tool(
    name="add_image",
    description="Add an image to this session so tools can use it: it becomes <image 1>, <image 2>, … in "
                "order. Give base64 data (optionally a data: URL) or an http(s) URL.",
    input_schema={"type": "object", "properties": {
        "data": {"type": "string", "description": "base64 image bytes or a data: URL"},
        "url": {"type": "string", "description": "http(s) URL of the image"}}, "additionalProperties": False},
)


class FabricMcp:
    def __init__(self, step: StepService, blobs: AsyncBlobStore, catalog: Catalog, settings: McpSettings) -> None:
        self._step, self._blobs, self._catalog, self._cfg = step, blobs, catalog, settings
        self._sessions: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._http_sessions: dict[tuple[str, str], str] = {}
        self.server: Server[Any] = Server("toolfabric", version="0.1.0", on_list_tools=self._list_tools,
                                          on_call_tool=self._call_tool,
                                          instructions="Tools of the toolfabric fabric. Images: add_image, "
                                                       "then refer to them by name (<image 1>, <sub-image 1>).")

    def trajectory_id(self, ctx: Any) -> str:
        """The session's trajectory: by the caller's tenant and the streamable-HTTP session header, else by
        the stdio connection. A session id is only ever the session of the tenant that opened it: another
        tenant sending the same header gets a trajectory of its own (and the step API stores it in that
        tenant's namespace).

        The SDK builds a new ServerSession per request; what lasts is the HTTP session id or the connection.
        """
        request = getattr(ctx, "request", None)
        header = request.headers.get("mcp-session-id") if request is not None else None
        if header:
            key = (principal_of(request).tenant, header)
            if key not in self._http_sessions:
                while len(self._http_sessions) >= _MAX_HTTP_SESSIONS:  # oldest first; its state expires by TTL
                    self._http_sessions.pop(next(iter(self._http_sessions)))
                self._http_sessions[key] = f"mcp-{uuid.uuid4()}"
            return self._http_sessions[key]
        connection = getattr(ctx.session, "_connection", ctx.session)
        if connection not in self._sessions:
            self._sessions[connection] = f"mcp-{uuid.uuid4()}"
        return self._sessions[connection]

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        tools = [types.Tool(name=s.name, description=s.description, input_schema=s.json_schema())
                 for s in self._catalog.visible(self._cfg.mode)]
        return types.ListToolsResult(tools=[*tools, ADD_IMAGE])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tid = self.trajectory_id(ctx)
        arguments = dict(params.arguments or {})
        if params.name == ADD_IMAGE.name:
            try:
                image = _image_input(arguments, self._cfg.max_image_bytes)
            except ValueError as exc:
                return _error(str(exc))
            item = StepItem(tid, calls=[], images=[image], mode=self._cfg.mode, question="(MCP session)")
        else:
            item = StepItem(tid, calls=[RawCall(params.name, arguments)], mode=self._cfg.mode,
                            question="(MCP session)")
        request = getattr(ctx, "request", None)  # HTTP: the caller the policy resolved; stdio: the local user
        try:
            [outcome] = await self._step.step([item], principal_of(request))
        except LimitExceeded as exc:
            return _error(str(exc))
        if not outcome.valid:
            return _error(outcome.error)
        if not outcome.observations:
            return types.CallToolResult(content=[types.TextContent(type="text", text=outcome.text)])
        content: list[types.ContentBlock] = []
        failed = False
        for observation in outcome.observations:
            failed |= observation.is_error
            text = (f"error ({observation.error_kind}): {observation.text}" if observation.is_error
                    else observation.text)
            content.append(types.TextContent(type="text", text=text))
            content += await self._images(observation)
        return types.CallToolResult(content=content, is_error=failed)

    async def _images(self, observation: pb.Observation) -> list[types.ContentBlock]:
        out: list[types.ContentBlock] = []
        for image in observation.images:
            try:
                data = await self._blobs.get(image.blob)
            except BlobNotFound:
                continue
            out.append(types.TextContent(type="text", text=f"{image.name} ({image.width}x{image.height}, "
                                                            f"{image.origin})"))
            out.append(types.ImageContent(type="image", data=base64.b64encode(data).decode(),
                                          mime_type=image.mime_type or "image/png"))
        return out


class TenantSessions:
    """The MCP door's sessions belong to the tenant that opened them: the caller the policy resolved is handed
    to the MCP SDK as the session's principal, and the SDK answers another tenant's use of a session id
    (a request, its event stream, or DELETE) exactly as it answers an unknown id: 404 "Session not found"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            tenant = principal_in(scope).tenant
            # The key itself stays out: the tenant is the principal, whichever of its keys it uses.
            scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=f"tenant:{tenant}", scopes=[],
                                                          subject=tenant))
        await self.app(scope, receive, send)


def _image_input(arguments: dict[str, Any], max_bytes: int) -> pb.ImageInput:
    data, url = arguments.get("data"), arguments.get("url")
    if bool(data) == bool(url) or not isinstance(data or url, str):
        raise ValueError("add_image takes exactly one of data (base64) or url (http/https)")
    if url:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http(s), not {url[:40]!r}")
        return pb.ImageInput(url=url)
    data = str(data)
    payload = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    if len(payload) * 3 // 4 > max_bytes:
        raise ValueError(f"image is over the limit of {max_bytes} bytes (TOOLFABRIC_MCP_MAX_IMAGE_BYTES)")
    try:
        return pb.ImageInput(data=base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("data is not base64 (or a base64 data: URL)") from None


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)
