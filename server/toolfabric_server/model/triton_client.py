"""Streaming one model step from Triton with the vLLM backend's tensor contract.

Uses `tritonclient.grpc.aio`'s bidirectional stream API (the model is decoupled); a request ends
with the response parameter `triton_final_response`. Cancelling the consuming task cancels the
gRPC stream, which Triton passes on to the model as a cancelled request.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from toolfabric_server.model.backend import ModelChunk, ModelUnavailable


@dataclass(frozen=True)
class Capabilities:
    """What a served model takes and says beyond the vLLM backend's contract, read from its Triton config once."""

    input_ids: bool = False          # takes `input_ids` (token-in)
    return_token_ids: bool = False   # returns prompt/output token ids when asked
    logprobs: bool = False           # returns `output_logprobs`
    # Triton's official vLLM backend: no token ids, but its `logprobs` output (JSON, one {id: {logprob, …}} per
    # token) names each sampled token when sampling asks for logprobs 0: the completion ids come from there.
    logprob_ids: bool = False
    token_unit: str = "tokens"  # noqa: S105 - what its num_*_tokens count (parameter `token_unit`; the baseline: "words")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Capabilities:
        inputs = {i.get("name") for i in config.get("input", [])}
        outputs = {o.get("name") for o in config.get("output", [])}
        unit = config.get("parameters", {}).get("token_unit", {}).get("string_value", "") or "tokens"
        return cls(input_ids="input_ids" in inputs, return_token_ids="return_token_ids" in inputs,
                   logprobs="output_logprobs" in outputs, token_unit=unit,
                   logprob_ids="return_logprobs" in inputs and "logprobs" in outputs
                   and "return_token_ids" not in inputs)


def _bytes_tensor(values: list[bytes]) -> bytes:
    """A BYTES tensor's raw contents: each element a 4-byte little-endian length, then its bytes."""
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


_TRUE = b"\x01"
# An image's tensor element (base64, as the vLLM backend takes it) per image, kept while its trajectory steps: every
# step sends the conversation's images again, and encoding them was a tenth of building a request.
_ENCODED: dict[bytes, bytes] = {}
_ENCODED_MAX_BYTES = 64 * 1024 * 1024  # images and their encodings held (a few trajectories' worth of photos)
_encoded_bytes = 0


def _encoded(image: bytes) -> bytes:
    global _encoded_bytes
    found = _ENCODED.get(image)
    if found is None:
        found = base64.b64encode(image)
        size = len(image) + len(found)
        if size > _ENCODED_MAX_BYTES:
            return found
        while _ENCODED and _encoded_bytes + size > _ENCODED_MAX_BYTES:
            oldest = next(iter(_ENCODED))  # insertion order
            _encoded_bytes -= len(oldest) + len(_ENCODED.pop(oldest))
        _ENCODED[image] = found
        _encoded_bytes += size
    return found


def build_request(model: str, request_id: str, prompt: str, images: list[bytes], sampling: dict[str, Any],
                  input_ids: list[int] | None = None,
                  capabilities: Capabilities = Capabilities()) -> service_pb2.ModelInferRequest:
    """The step's request with the vLLM backend's tensors (the token extensions only for a model whose config declares
    them), built directly as the protobuf message: tritonclient's InferInput and numpy per tensor cost more than the
    bytes themselves."""
    if (capabilities.logprobs or capabilities.logprob_ids) and "logprobs" not in sampling:
        sampling = {**sampling, "logprobs": 0}  # vLLM: 0 = the sampled token's own logprob only
    tensors: list[tuple[str, str, int, bytes]] = [
        ("text_input", "BYTES", 1, _bytes_tensor([prompt.encode("utf-8")])),
        ("stream", "BOOL", 1, _TRUE),
        ("sampling_parameters", "BYTES", 1, _bytes_tensor([json.dumps(sampling).encode()])),
        ("exclude_input_in_output", "BOOL", 1, _TRUE),
        # Triton's vLLM backend sends finish_reason only when asked (and as "None" until the last response).
        ("return_finish_reason", "BOOL", 1, _TRUE),
        ("return_num_input_tokens", "BOOL", 1, _TRUE),
        ("return_num_output_tokens", "BOOL", 1, _TRUE),
    ]
    if images:
        tensors.append(("image", "BYTES", len(images), _bytes_tensor([_encoded(b) for b in images])))
    if input_ids is not None and capabilities.input_ids:
        tensors.append(("input_ids", "INT64", len(input_ids), np.asarray(input_ids, dtype="<i8").tobytes()))
    if capabilities.return_token_ids:
        tensors.append(("return_token_ids", "BOOL", 1, _TRUE))
    if capabilities.logprob_ids and sampling.get("logprobs") == 0:
        tensors.append(("return_logprobs", "BOOL", 1, _TRUE))
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    for name, datatype, size, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=[size])
        request.raw_input_contents.append(raw)
    return request


def sampled_tokens(logprobs_json: str) -> tuple[list[int], list[float]] | None:
    """The sampled ids and logprobs in a vLLM backend `logprobs` output asked for with logprobs 0 (one entry per
    token, holding only the sampled one); None when it is absent or an entry holds several (which one was sampled
    is then not said)."""
    try:
        entries = json.loads(logprobs_json) if logprobs_json else None
    except ValueError:
        return None
    if not isinstance(entries, list):
        return None
    ids, values = [], []
    for entry in entries:
        if not isinstance(entry, dict) or len(entry) != 1:
            return None
        [(token, info)] = entry.items()
        try:
            ids.append(int(token))
            values.append(float(info["logprob"]))
        except (ValueError, TypeError, KeyError):
            return None
    return ids, values


class _Outputs:
    """One streamed response's output tensors, found in one pass over the response and each decoded only when read
    (a model step streams a response per token: looking each of eight names up by scanning was a tenth of the
    stream's cost in the gateway)."""

    def __init__(self, response: service_pb2.ModelInferResponse) -> None:
        self.response = response
        self._raw = response.raw_output_contents
        self._where = {o.name: (i, o.datatype) for i, o in enumerate(response.outputs)}
        self._result: grpcclient.InferResult | None = None

    def _numpy(self, name: str) -> np.ndarray | None:
        """The client's own decoding, for what is not a raw fixed-size tensor."""
        if self._result is None:
            self._result = grpcclient.InferResult(self.response)
        return self._result.as_numpy(name)

    def array(self, name: str) -> np.ndarray | None:
        found = self._where.get(name)
        if found is None:
            return None
        index, datatype = found
        if index >= len(self._raw) or datatype not in _FIXED:  # not a raw tensor, or BYTES / BF16: the client's way
            return self._numpy(name)
        return np.frombuffer(self._raw[index], dtype=_FIXED[datatype])

    def text(self, name: str) -> str:
        found = self._where.get(name)
        if found is None:
            return ""
        index, datatype = found
        if datatype == "BYTES" and index < len(self._raw):
            return "".join(v.decode("utf-8", "replace") for v in _bytes_elements(self._raw[index]))
        arr = self._numpy(name)
        if arr is None:
            return ""
        return "".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1))

    def finish_reason(self) -> str | None:
        reason = self.text("finish_reason")
        return None if reason in ("", "None") else reason

    def first_int(self, name: str) -> int | None:
        arr = self.array(name)
        return None if arr is None or arr.size == 0 else int(arr.reshape(-1)[0])

    def int_list(self, name: str) -> list[int] | None:
        arr = self.array(name)
        return None if arr is None else [int(v) for v in arr.reshape(-1)]

    def float_list(self, name: str) -> list[float]:
        arr = self.array(name)
        return [] if arr is None else [float(v) for v in arr.reshape(-1)]


_FIXED = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP64": np.float64, "BOOL": np.bool_}


def _bytes_elements(raw: bytes) -> list[bytes]:
    """A raw BYTES tensor's elements: each a 4-byte little-endian length, then its bytes."""
    out, pos, end = [], 0, len(raw)
    while pos + 4 <= end:
        size = int.from_bytes(raw[pos:pos + 4], "little")
        out.append(raw[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


class TritonModel:
    """The gateway's ModelBackend on Triton (one shared gRPC channel)."""

    def __init__(self, url: str, idle_timeout_s: float, reconnect_backoff_max_s: float = 2.0,
                 max_streams: int = 256) -> None:
        # gRPC's reconnect backoff grows to 120 s by default: capped, a restarted Triton is found again
        # within seconds, without restarting the gateway.
        backoff_ms = int(reconnect_backoff_max_s * 1000)
        options = [
            ("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.initial_reconnect_backoff_ms", min(backoff_ms, 500)),
            ("grpc.min_reconnect_backoff_ms", min(backoff_ms, 500)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ]
        self._client = grpcclient.InferenceServerClient(url, channel_args=options)
        # The streams go through the stub on a channel of their own (same options); the client asks the rest.
        self._channel = grpc.aio.insecure_channel(url, options=options)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._url = url
        self._idle_timeout_s = idle_timeout_s
        self._serving: dict[str, float] = {}  # model → loop time until which it is known to be served
        self._capabilities: dict[str, Capabilities] = {}
        self._max_streams = max_streams
        self._slots: dict[str, asyncio.Semaphore] = {}  # model → its streams in flight (ModelSettings.max_streams)

    async def capabilities(self, model: str) -> Capabilities:
        """The model's token extensions, from its config (asked once; a model Triton cannot describe has none)."""
        known = self._capabilities.get(model)
        if known is None:
            try:
                config = await self._client.get_model_config(model, as_json=True, client_timeout=5)
            except InferenceServerException:
                return Capabilities()  # not cached: asked again once the model is served
            known = self._capabilities[model] = Capabilities.from_config(config.get("config", config))
        return known

    async def stream(
        self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
        input_ids: list[int] | None = None,
    ) -> AsyncIterator[ModelChunk]:
        can = await self.capabilities(model)
        request = build_request(model, request_id, prompt, images, sampling, input_ids, can)
        token_in = input_ids is not None and can.input_ids
        # A step beyond max_streams waits here for a slot: the idle timeout starts once Triton has the request.
        slot = self._slots.setdefault(model, asyncio.Semaphore(self._max_streams))
        await slot.acquire()
        # The stub's own call, written to and read from directly: tritonclient's stream wrapper (a request generator,
        # a task consuming it, a result object per response) cost more per token than the response itself.
        call = self._stub.ModelStreamInfer()
        try:
            await call.write(request)
            await call.done_writing()
            while True:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (Cancel, the
                    # trajectory deadline) that lands as a chunk arrives, and the stream would go on.
                    async with asyncio.timeout(self._idle_timeout_s):
                        message = await call.read()
                except TimeoutError:
                    raise ModelUnavailable(
                        f"model {model} sent nothing for {self._idle_timeout_s:.0f}s "
                        "(TOOLFABRIC_MODEL_STREAM_IDLE_TIMEOUT_S)"
                    ) from None
                if message is grpc.aio.EOF:
                    raise ModelUnavailable(f"Triton closed the stream of {model} before its final response")
                if message.error_message:
                    raise ModelUnavailable(f"model {model} failed: {_one_line(message.error_message)}")
                out = _Outputs(message.infer_response)
                params = out.response.parameters
                final = "triton_final_response" in params and params["triton_final_response"].bool_param
                output_ids = out.int_list("output_token_ids") or []
                output_logprobs = out.float_list("output_logprobs")
                if can.logprob_ids:
                    sampled = sampled_tokens(out.text("logprobs"))
                    output_ids, output_logprobs = sampled if sampled is not None else ([], [])
                yield ModelChunk(
                    text=out.text("text_output"),
                    finish_reason=out.finish_reason(),
                    input_tokens=out.first_int("num_input_tokens"),
                    output_tokens=out.first_int("num_output_tokens"),
                    prompt_token_ids=out.int_list("prompt_token_ids"),
                    output_token_ids=output_ids, output_logprobs=output_logprobs,
                    num_image_tokens=out.first_int("num_image_tokens"),
                    token_in=token_in, token_unit=can.token_unit,
                )
                if final:
                    return
        except ModelUnavailable:
            self._serving.pop(model, None)  # ask Triton again before the next Run is admitted
            raise
        except InferenceServerException as exc:
            self._serving.pop(model, None)
            raise ModelUnavailable(f"model service at {self._url} is unavailable: {_one_line(exc)}") from exc
        except grpc.RpcError as exc:  # Triton went away mid-stream (killed, restarted, network)
            self._serving.pop(model, None)
            raise ModelUnavailable(f"model service at {self._url} dropped the stream of {model}: "
                                   f"{_rpc_reason(exc)}") from exc
        finally:
            slot.release()
            call.cancel()  # no-op once finished; else Triton is told the request is cancelled

    async def ready(self, model: str) -> bool:
        try:
            return bool(await self._client.is_model_ready(model, client_timeout=5))
        except InferenceServerException:
            return False

    async def serves(self, model: str) -> bool:
        """Whether Triton serves `model` now; raises ModelUnavailable when Triton itself cannot be reached.

        A positive answer is kept for a second (500 Runs arriving at once ask once), and a Triton too busy to
        answer in time counts as serving: the model stream itself then fails, named, if it is not."""
        loop = asyncio.get_running_loop()
        if self._serving.get(model, 0.0) > loop.time():
            return True
        try:
            ready = bool(await self._client.is_model_ready(model, client_timeout=5))
        except InferenceServerException as exc:
            if "DEADLINE_EXCEEDED" in str(exc.status()):
                return True
            raise ModelUnavailable(f"model service at {self._url} is unreachable: {_one_line(exc)}") from exc
        if ready:
            self._serving[model] = loop.time() + 1.0
        return ready

    async def close(self) -> None:
        await self._client.close()
        await self._channel.close()


def _one_line(exc: BaseException | InferenceServerException | str) -> str:
    text = exc.message() if isinstance(exc, InferenceServerException) and exc.message() else str(exc)
    return " ".join(text.split())[:300]


def _rpc_reason(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if isinstance(code, grpc.StatusCode) else "error"
    return f"{name} ({' '.join(str(details).split())[:200]})"

