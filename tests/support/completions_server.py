"""A small local server speaking OpenAI's documented completions API (`GET /v1/models`, `POST /v1/completions`
with `stream: true`: `data: {…"object": "text_completion", "choices": [{"text", "index", "logprobs",
"finish_reason"}]}` events, a last `usage` event when `stream_options.include_usage` asks, `data: [DONE]`), plus
vLLM's `return_token_ids` fields. Each request gets the next scripted Reply; the server records what it was sent and
which streams their client closed before the end (how a real server learns of a cancel)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from toolfabric_server.devstack.processes import free_port


@dataclass
class Reply:
    pieces: list[str] = field(default_factory=list)  # text deltas, one event each
    token_ids: list[list[int]] | None = None  # per piece (sent only when the request asks return_token_ids)
    logprobs: list[list[float]] | None = None  # per piece
    finish_reason: str = "stop"
    prompt_tokens: int | None = None  # usage; None = the prompt's length when it came as ids, else 7
    status: int = 200
    error: str = ""  # the message of an OpenAI error body (status >= 400) or of an `error` event mid-stream
    raw: list[str] | None = None  # SSE lines sent as they are, instead of the above
    stall_s: float = 0.0  # silence after the pieces, before the finish (cancel and idle-timeout tests)
    done: bool = True  # end with data: [DONE]


@dataclass
class Seen:
    body: dict[str, Any]
    headers: dict[str, str]  # names in lower case


class CompletionsServer:
    """Runs on its own thread and event loop, so sync tests, the gateway process and async tests all reach it."""

    def __init__(self, models: tuple[str, ...] = ("tiny",), api_key: str = "") -> None:
        self.models, self.api_key = models, api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.replies: list[Reply | Callable[[dict[str, Any]], Reply]] = []
        self.seen: list[Seen] = []
        self.disconnected = 0  # streams whose client went away before the end
        self.running = 0  # streams being generated now
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> CompletionsServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.running == 0

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "Unauthorized", "type": "invalid_request_error"}},
                                     status=401)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        return self._refused(request) or web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.seen.append(Seen(body, {k.lower(): v for k, v in request.headers.items()}))
        script = self.replies.pop(0) if self.replies else Reply(["<answer>", "nothing scripted", "</answer>"])
        reply = script(body) if callable(script) else script
        if reply.status >= 400:
            return web.json_response({"error": {"message": reply.error, "type": "BadRequestError", "param": None,
                                                "code": reply.status}}, status=reply.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        self.running += 1
        try:
            for line in reply.raw if reply.raw is not None else self._events(body, reply):
                if line == "STALL":
                    await self._stall(request, reply.stall_s)
                    continue
                await response.write(f"{line}\n\n".encode())
                await asyncio.sleep(0)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected += 1
            raise
        finally:
            self.running -= 1
        return response

    async def _stall(self, request: web.Request, seconds: float) -> None:
        """Silence, watching the connection: a client that goes away ends the stream, as vLLM aborts then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client closed the stream")
            await asyncio.sleep(0.01)

    def _events(self, body: dict[str, Any], reply: Reply) -> list[str]:
        prompt = body.get("prompt")
        ids = body.get("return_token_ids") is True

        def event(choice: dict[str, Any], **extra: Any) -> str:
            return "data: " + json.dumps({"id": "cmpl-1", "object": "text_completion", "created": 0,
                                          "model": body.get("model"), "choices": [choice], **extra})

        out = []
        for i, piece in enumerate(reply.pieces):
            choice: dict[str, Any] = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
            if reply.logprobs is not None:
                choice["logprobs"] = {"tokens": [], "token_logprobs": reply.logprobs[i], "top_logprobs": [],
                                      "text_offset": []}
            if ids:
                choice["token_ids"] = reply.token_ids[i] if reply.token_ids else []
                if i == 0:
                    choice["prompt_token_ids"] = prompt if isinstance(prompt, list) else [1, 2, 3]
            out.append(event(choice))
        if reply.stall_s:
            out.append("STALL")
        if reply.error:
            out.append("data: " + json.dumps({"error": {"message": reply.error, "type": "InternalServerError",
                                                        "code": 500}}))
        else:
            out.append(event({"index": 0, "text": "", "logprobs": None, "finish_reason": reply.finish_reason}))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else (
                len(prompt) if isinstance(prompt, list) else 7)
            completion = sum(len(t) for t in reply.token_ids) if reply.token_ids else len(reply.pieces)
            out.append("data: " + json.dumps({"id": "cmpl-1", "object": "text_completion", "created": 0,
                                              "model": body.get("model"), "choices": [],
                                              "usage": {"prompt_tokens": prompt_tokens,
                                                        "completion_tokens": completion,
                                                        "total_tokens": prompt_tokens + completion}}))
        if reply.done:
            out.append("data: [DONE]")
        return out
