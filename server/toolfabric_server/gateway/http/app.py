"""The Starlette app of the HTTP API: routes, body checks, streaming, and the error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.common.telemetry import setup as telemetry
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.admission import AdmissionRefused, Admitted
from toolfabric_server.gateway.exceptions import HandedOver, InvalidRequest, LimitExceeded, ModelNotServed, NotYours
from toolfabric_server.gateway.http.chat import ChatTurn, parse_chat, read_json
from toolfabric_server.gateway.http.errors import ApiError
from toolfabric_server.gateway.http.render import Transcript
from toolfabric_server.gateway.http.settings import HttpSettings
from toolfabric_server.gateway.policy import Policy, Principal
from toolfabric_server.gateway.policy.http import RequireKey, principal_of
from toolfabric_server.gateway.runs import Runs
from toolfabric_server.model.errors import ModelUnavailable

log = logging.getLogger(__name__)
CHAT_PATHS = ("/api/v1/chat/completions", "/v1/chat/completions")
CHAT_ROUTES = (*CHAT_PATHS, "/v1/models", "/api/v1/models", "/healthz", "/readyz")
Readiness = Callable[[], Awaitable[bool]]


class _EventStream(StreamingResponse):
    """SSE that notices a vanished client at once (not only at its next write) and stops the trajectory;
    `admitted` (the trajectory's admission slot) is released when the stream ends, however it ends."""

    def __init__(self, content: AsyncIterator[str], admitted: contextlib.AsyncExitStack, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._admitted = admitted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def stream() -> None:
                    with contextlib.suppress(OSError, ClientDisconnect):
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            # Cancelled while waiting on a send, the generator is left suspended: close it (which cancels the
            # trajectory) now rather than whenever it is garbage-collected.
            body = self.body_iterator
            try:
                if isinstance(body, AsyncGenerator):
                    await body.aclose()
            finally:
                await self._admitted.aclose()


def create_app(runs: Runs, policy: Policy, settings: HttpSettings, ready: Readiness) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        principal = principal_of(request)  # the policy resolved it before any route ran
        turn = parse_chat(await _json_body(request, settings.max_body_bytes), settings.models)
        # The gateway's own queue, as for gRPC Run: the slot is held until the trajectory's stream ends.
        admitted = contextlib.AsyncExitStack()
        try:
            slot = await admitted.enter_async_context(policy.admission.slot())
        except AdmissionRefused as exc:
            raise ApiError(429, str(exc), code="gateway_busy",
                           headers={"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))}) from None
        try:
            return await _started(turn, principal, request, admitted, slot)
        except BaseException:
            await admitted.aclose()
            raise

    async def _started(turn: ChatTurn, principal: Principal, request: Request, admitted: contextlib.AsyncExitStack,
                       slot: Admitted) -> Response:
        try:
            spec = await runs.prepare(turn.request, principal, turn.history)
        except NotYours as exc:
            raise ApiError(404, str(exc), code="not_found", param="toolfabric.parent_trajectory_id") from None
        except ModelNotServed as exc:
            raise ApiError(503, str(exc), code="model_not_ready", param="model") from None
        except ModelUnavailable as exc:
            raise ApiError(503, f"model_unavailable: {exc}", code="model_unavailable") from None
        except InvalidRequest as exc:
            raise ApiError(400, str(exc), param=turn.param(exc.field) if exc.field else None) from None
        except LimitExceeded as exc:
            raise ApiError(429, str(exc), code="rate_limit_exceeded",
                           headers={"Retry-After": str(int(exc.retry_after_s))}) from None
        spec.admitted_at, spec.admission_wait_s = slot.at, slot.wait_s  # the deadline counts from admission
        trace_context = telemetry.context_from_metadata(request.headers.items())
        events = runs.stream(spec, turn.request.mode, trace_context)
        if turn.stream:
            return _EventStream(_sse(events, turn, spec), admitted, media_type="text/event-stream",
                                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            return await _complete(events, turn, spec, request)
        finally:
            await admitted.aclose()

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "toolfabric",
             "toolfabric": {"mode": route.mode, "triton_model": route.triton_model}}
            for name, route in sorted(settings.models.items())]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok = await ready()
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    routes = [*(Route(path, chat_completions, methods=["POST"]) for path in CHAT_PATHS),
              Route("/v1/models", models, methods=["GET"]), Route("/api/v1/models", models, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={ApiError: _api_error, HTTPException: _http_error,
                                                       Exception: _internal_error})
    # Every route but the probes passes the policy first (401 in OpenAI's error shape); metrics count those too.
    app.add_middleware(RequireKey, authenticator=policy.authenticator, open_paths=("/healthz", "/readyz"),
                       error_body=lambda message: ApiError(401, message, code="invalid_api_key").body())
    app.add_middleware(_RequestMetrics)
    return app


async def _json_body(request: Request, limit: int) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, not {content_type or 'missing'!r}",
                       code="unsupported_media_type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _too_large(int(declared), limit), code="request_too_large")
    body = bytearray()
    try:
        async for chunk in request.stream():  # a chunked body is counted as it arrives
            body += chunk
            if len(body) > limit:
                raise ApiError(413, _too_large(len(body), limit, at_least=True), code="request_too_large")
    except ClientDisconnect:
        raise ApiError(400, "the client went away while sending the request") from None
    return read_json(body)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    return (f"the request body is {'more than ' if at_least else ''}{size} bytes, over the limit of {limit} bytes "
            "(TOOLFABRIC_HTTP_MAX_BODY_BYTES)")


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(events: AsyncIterator[pb.RunEvent], turn: ChatTurn, spec: RunSpec) -> AsyncIterator[str]:
    """The stream: a first chunk with the role and ids, content chunks, the finish, [DONE]."""
    transcript = Transcript(turn.model, spec.conversation_id)
    try:
        async with contextlib.aclosing(events) as stream:  # type: ignore[type-var]
            async for event in stream:
                piece = transcript.feed(event)
                if event.WhichOneof("event") == "started":
                    yield _data(transcript.chunk({"role": "assistant", "content": ""},
                                                 extension=transcript.extension(final=False)))
                elif piece:
                    yield _data(transcript.chunk({"content": piece}))
    except HandedOver as exc:  # this gateway is shutting down; another replica goes on with the trajectory
        yield _data(ApiError(503, str(exc), code="gateway_shutting_down").body())
        yield "data: [DONE]\n\n"
        return
    if transcript.error is not None:  # a failed trajectory says so in OpenAI's error shape before the end
        yield _data(_failure(transcript).body() | {"toolfabric": transcript.extension(final=True)})
    yield _data(transcript.final_chunk())
    if turn.include_usage:
        yield _data(transcript.usage_chunk())
    yield "data: [DONE]\n\n"


async def _complete(events: AsyncIterator[pb.RunEvent], turn: ChatTurn, spec: RunSpec,
                    request: Request) -> Response:
    """The whole trajectory as one message; a client that disconnects meanwhile cancels it."""
    transcript = Transcript(turn.model, spec.conversation_id)

    async def collect() -> None:
        async with contextlib.aclosing(events) as stream:  # type: ignore[type-var]
            async for event in stream:
                transcript.feed(event)

    collecting = asyncio.create_task(collect())
    watching = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait((collecting, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (collecting, watching):
            task.cancel()
        await asyncio.gather(collecting, watching, return_exceptions=True)
    if collecting.done() and not collecting.cancelled() and isinstance(collecting.exception(), HandedOver):
        raise ApiError(503, str(collecting.exception()), code="gateway_shutting_down")
    if transcript.status == pb.STATUS_RUNNING:
        log.info("client went away; trajectory %s cancelled", spec.trajectory_id)
        return Response(status_code=499)  # nobody is listening any more
    if transcript.error is not None:
        raise _failure(transcript)
    return JSONResponse(transcript.completion())


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _failure(transcript: Transcript) -> ApiError:
    error = transcript.error or pb.Error(code="internal", message=transcript.reason)
    status = 503 if error.code == "model_unavailable" else 500
    return ApiError(status, f"trajectory {transcript.trajectory_id} failed: {error.message}", code=error.code)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return ApiError(405, f"{request.method} is not allowed on {request.url.path}",
                        code="method_not_allowed").response()
    return ApiError(exc.status_code, f"no route {request.url.path!r}" if exc.status_code == 404 else exc.detail,
                    code="not_found" if exc.status_code == 404 else None).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("HTTP API request failed")
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal").response()


class _RequestMetrics:
    """Counts requests by route and status (the route template, never the raw path: bounded labels)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope.get("path", "")
            route = path if path in CHAT_ROUTES else "other"
            metrics.http_request(route, str(status["code"]))
