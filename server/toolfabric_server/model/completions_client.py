"""A model on an OpenAI-compatible completions server (a team's `vllm serve`, SGLang) as the gateway's ModelBackend.

The fabric renders the prompt itself (the dialect's chat template, exactly as for Triton) and streams raw
`POST /v1/completions` with `stream: true`: no server-side chat template re-renders the conversation, and with the
checkpoint's tokenizer configured the prompt goes as token ids (the completions API takes a list of ints as the
prompt), so the ids the model sees are the fabric's. Each SSE event's `choices[0]` gives text, `finish_reason` and
`logprobs.token_logprobs`; vLLM's `return_token_ids` extension adds `prompt_token_ids` (first event) and `token_ids`;
`stream_options.include_usage` brings a last event with `usage` in the server's tokens.

httpx rather than the `openai` package: httpx is already the server side's HTTP client (the judge, the fetch
service), the vLLM extensions above are not fields of `openai`'s typed chunks (they would come back as untyped
extras), and closing the response closes the connection at once, which is how a server learns of a cancel (vLLM
aborts the request when its client disconnects). Errors read like the Triton path's (ModelUnavailable, one line).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.errors import ModelUnavailable
from toolfabric_server.model.settings import CompletionsEndpoint
from toolfabric_server.model.sse import event_data

_DONE = "[DONE]"


class CompletionsModel:
    """One model on one completions server (its own connection pool)."""

    def __init__(self, name: str, endpoint: CompletionsEndpoint, default_api_key: str, idle_timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = endpoint.url.rstrip("/")
        self._name, self._served, self._token_ids = name, endpoint.model or name, endpoint.token_ids
        key = endpoint.api_key.get_secret_value() or default_api_key
        self._idle_timeout_s = idle_timeout_s
        # The read timeout is the idle timeout: the longest silence before the first token and between two events.
        self._http = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(idle_timeout_s, connect=10.0),
                                       headers={"Authorization": f"Bearer {key}"} if key else {}, transport=transport)
        self._serving_until = 0.0

    def body(self, prompt: str, sampling: dict[str, Any], input_ids: list[int] | None) -> dict[str, Any]:
        """The request: the fabric's sampling settings as they are (vLLM's and SGLang's names are OpenAI's plus
        top_k & co.), the sampled tokens' logprobs (0 = the sampled one only), usage in the last event."""
        out: dict[str, Any] = {"logprobs": 0, **sampling, "model": self._served,
                               "prompt": input_ids if input_ids is not None else prompt,
                               "stream": True, "stream_options": {"include_usage": True}}
        if self._token_ids:
            out["return_token_ids"] = True
        return out

    async def stream(
        self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
        input_ids: list[int] | None = None,
    ) -> AsyncIterator[ModelChunk]:
        if images:
            raise ModelUnavailable(f"model {model} is served by a text completions server ({self.url}), which takes "
                                   f"no images; this step's prompt has {len(images)}")
        body = self.body(prompt, sampling, input_ids)
        try:
            async with self._http.stream("POST", "/completions", json=body,
                                         headers={"X-Request-Id": request_id}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise ModelUnavailable(f"model {model} failed: {self.url}/completions answered HTTP "
                                           f"{response.status_code}: {_error_message(response)}")
                async for chunk in self._chunks(model, response, token_in=input_ids is not None):
                    yield chunk
        except ModelUnavailable:
            self._serving_until = 0.0  # ask the server again before the next Run is admitted
            raise
        except httpx.TimeoutException:
            self._serving_until = 0.0
            raise ModelUnavailable(f"model {model} sent nothing for {self._idle_timeout_s:g}s "
                                   "(TOOLFABRIC_MODEL_STREAM_IDLE_TIMEOUT_S)") from None
        except httpx.HTTPError as exc:  # refused, reset, DNS: the server is down or went away mid-stream
            self._serving_until = 0.0
            raise ModelUnavailable(f"model service at {self.url} is unavailable: {_one_line(exc)}") from exc

    async def _chunks(self, model: str, response: httpx.Response, token_in: bool) -> AsyncIterator[ModelChunk]:
        usage_seen = False
        prompt_len = output_len = 0
        async for data in event_data(response.aiter_lines()):
            if data.strip() == _DONE:
                if not usage_seen:  # a server that ignores stream_options: count the ids it gave, if any
                    yield ModelChunk(input_tokens=prompt_len or None, output_tokens=output_len or None,
                                     token_in=token_in)
                return
            event = _event(model, self.url, data)
            usage = event.get("usage")
            chunk = _chunk(model, self.url, event, token_in)
            if chunk is not None:
                prompt_len = len(chunk.prompt_token_ids) if chunk.prompt_token_ids is not None else prompt_len
                output_len += len(chunk.output_token_ids)
                yield chunk
            if isinstance(usage, dict):
                usage_seen = True
                yield ModelChunk(input_tokens=_count(model, self.url, usage, "prompt_tokens"),
                                 output_tokens=_count(model, self.url, usage, "completion_tokens"), token_in=token_in)
        raise ModelUnavailable(f"{self.url} closed the stream of {model} before its end (no data: [DONE])")

    async def serves(self, model: str) -> bool:
        """Whether the server lists the model now (GET /models); ModelUnavailable when the server cannot be reached
        or refuses. A positive answer is kept for a second, as for Triton."""
        loop = asyncio.get_running_loop()
        if self._serving_until > loop.time():
            return True
        try:
            response = await self._http.get("/models", timeout=5.0)
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"model service at {self.url} is unreachable: {_one_line(exc)}") from exc
        if response.status_code >= 400:
            raise ModelUnavailable(f"model service at {self.url} answered HTTP {response.status_code} to GET "
                                   f"/models: {_error_message(response)}")
        try:
            listed = {m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)}
        except (ValueError, AttributeError) as exc:
            raise ModelUnavailable(f"model service at {self.url} answered GET /models with something other than "
                                   "an OpenAI model list") from exc
        if self._served in listed:
            self._serving_until = loop.time() + 1.0
            return True
        return False

    async def ready(self, model: str) -> bool:
        try:
            return await self.serves(model)
        except ModelUnavailable:
            return False

    async def close(self) -> None:
        await self._http.aclose()


def _event(model: str, url: str, data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise ModelUnavailable(f"{url} sent a malformed event in the stream of {model} (not a JSON object): "
                               f"{_clip(data)}")
    error = event.get("error")
    if error is not None:  # vLLM and SGLang report a failure after the stream began as an `error` event
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ModelUnavailable(f"model {model} failed: {_clip(str(message))}")
    return event


def _chunk(model: str, url: str, event: dict[str, Any], token_in: bool) -> ModelChunk | None:
    """The first choice of an event as a ModelChunk (None for an event without choices: the usage event)."""
    choices = event.get("choices")
    if not choices:
        return None
    choice = choices[0] if isinstance(choices, list) else None
    if not isinstance(choice, dict):
        raise ModelUnavailable(f"{url} sent a malformed event in the stream of {model} (choices[0] is not an "
                               f"object): {_clip(json.dumps(event))}")
    text, finish = choice.get("text", ""), choice.get("finish_reason")
    logprobs = choice.get("logprobs") or {}
    prompt_ids = choice.get("prompt_token_ids", event.get("prompt_token_ids"))
    values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    try:
        return ModelChunk(
            text=_typed(text, str), finish_reason=_typed(finish, str) if finish is not None else None,
            prompt_token_ids=[_typed(i, int) for i in prompt_ids] if prompt_ids is not None else None,
            output_token_ids=[_typed(i, int) for i in choice.get("token_ids") or []],
            output_logprobs=[float(_typed(v, (int, float))) for v in values or []], token_in=token_in)
    except TypeError as exc:
        raise ModelUnavailable(f"{url} sent a malformed event in the stream of {model} ({exc}): "
                               f"{_clip(json.dumps(event))}") from None


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{value!r} where {getattr(kind, '__name__', 'a number')} belongs")
    return value


def _count(model: str, url: str, usage: dict[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ModelUnavailable(f"{url} sent a malformed usage in the stream of {model}: {key}={value!r}")
    return value


def _error_message(response: httpx.Response) -> str:
    """OpenAI's error body ({"error": {"message": …}}), vLLM's older {"message": …}, or the body itself."""
    try:
        body = response.json()
    except ValueError:
        return _clip(response.text) or response.reason_phrase
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message", error) if isinstance(error, dict) else error
    return _clip(str(message))


def _one_line(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _clip(text: str) -> str:
    return " ".join(text.split())[:300]
