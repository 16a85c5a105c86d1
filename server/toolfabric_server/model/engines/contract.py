"""The request and response tensors of Triton's vLLM backend, plus the fabric's token extensions.

Matched to triton-inference-server/vllm_backend (src/model.py, src/utils/request.py): `text_input`,
`image` (base64, one element per image), `stream`, `sampling_parameters` (JSON; numbers may come as
strings), `exclude_input_in_output` (streaming requires it true), the `return_*` flags; outputs
`text_output` (the new text of this response when streaming), `finish_reason` (`str()` of vLLM's
reason, so "None" until the last response), `cumulative_logprob`, `logprobs` (JSON),
`num_input_tokens`, `num_output_tokens` (tokens behind this response). A cancelled request ends with
a CANCELLED error response. Extensions (docs/models.md): `input_ids` INT64 [-1] replaces the
tokenised prompt; with `return_token_ids` the first response carries `prompt_token_ids` and
`num_image_tokens`, every response `output_token_ids` (and `output_logprobs` when sampling asks for
logprobs). Only importable inside Triton's python stub.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

FLAGS = ("return_finish_reason", "return_cumulative_logprob", "return_logprobs", "return_num_input_tokens",
         "return_num_output_tokens", "return_token_ids")
INPUTS: list[dict[str, Any]] = [
    {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
    {"name": "image", "data_type": "TYPE_STRING", "dims": [-1], "optional": True},
    {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
    {"name": "sampling_parameters", "data_type": "TYPE_STRING", "dims": [1], "optional": True},
    {"name": "exclude_input_in_output", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
    *[{"name": f, "data_type": "TYPE_BOOL", "dims": [1], "optional": True} for f in FLAGS],
    {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1], "optional": True},
]
OUTPUTS: list[dict[str, Any]] = [
    {"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]},
    {"name": "finish_reason", "data_type": "TYPE_STRING", "dims": [-1]},
    {"name": "cumulative_logprob", "data_type": "TYPE_FP32", "dims": [-1]},
    {"name": "logprobs", "data_type": "TYPE_STRING", "dims": [-1]},
    {"name": "num_input_tokens", "data_type": "TYPE_UINT32", "dims": [1]},
    {"name": "num_output_tokens", "data_type": "TYPE_UINT32", "dims": [-1]},
    {"name": "prompt_token_ids", "data_type": "TYPE_INT64", "dims": [-1]},
    {"name": "output_token_ids", "data_type": "TYPE_INT64", "dims": [-1]},
    {"name": "output_logprobs", "data_type": "TYPE_FP32", "dims": [-1]},
    {"name": "num_image_tokens", "data_type": "TYPE_INT64", "dims": [1]},
]


def auto_complete(config: Any) -> Any:
    """What the vLLM backend's auto_complete_config does: the contract's tensors, decoupled, no Triton batching."""
    current = config.as_dict()
    have_in = {t["name"] for t in current.get("input", [])}
    have_out = {t["name"] for t in current.get("output", [])}
    for tensor in INPUTS:
        if tensor["name"] not in have_in:
            config.add_input(tensor)
    for tensor in OUTPUTS:
        if tensor["name"] not in have_out:
            config.add_output(tensor)
    config.set_model_transaction_policy({"decoupled": True})
    config.set_max_batch_size(0)
    return config


class BadRequest(ValueError):
    """The request cannot be served as sent (the message says what was wrong)."""


@dataclass
class Generation:
    """One request, read off its tensors."""

    prompt: str
    input_ids: list[int] | None
    images: list[Any]            # PIL images, RGB
    stream: bool
    prepend_input: bool
    sampling: dict[str, Any]
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def wants_logprobs(self) -> bool:
        return self.sampling.get("logprobs") is not None


def _tensor(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _bool(request: Any, name: str) -> bool | None:
    value = _tensor(request, name)
    return None if value is None else bool(value.reshape(-1)[0])


def read(request: Any) -> Generation:
    from PIL import Image

    text = _tensor(request, "text_input")
    if text is None:
        raise BadRequest("the input text_input is required")
    prompt = text.reshape(-1)[0]
    prompt = prompt.decode("utf-8") if isinstance(prompt, bytes) else str(prompt)
    images = []
    raw_images = _tensor(request, "image")
    for i, item in enumerate([] if raw_images is None else raw_images.reshape(-1)):
        try:
            images.append(Image.open(io.BytesIO(base64.b64decode(item))).convert("RGB"))
        except Exception as exc:
            raise BadRequest(f"image {i} is not a base64-encoded image ({type(exc).__name__})") from None
    stream = bool(_bool(request, "stream"))
    exclude = _bool(request, "exclude_input_in_output")
    prepend = (not exclude) if exclude is not None else (not stream)
    if prepend and stream:
        raise BadRequest("When streaming, `exclude_input_in_output` = False is not allowed.")
    raw = _tensor(request, "sampling_parameters")
    params = raw.reshape(-1)[0].decode("utf-8") if raw is not None else request.parameters()
    try:
        sampling = json.loads(params or "{}")
    except ValueError:
        raise BadRequest("sampling_parameters is not a JSON object") from None
    if not isinstance(sampling, dict):
        raise BadRequest("sampling_parameters is not a JSON object")
    ids = _tensor(request, "input_ids")
    input_ids = None if ids is None else [int(i) for i in ids.reshape(-1)]
    if input_ids is not None and not input_ids:
        raise BadRequest("input_ids is empty")
    flags = {name: bool(_bool(request, name)) for name in FLAGS}
    return Generation(prompt, input_ids, images, stream, prepend, sampling, flags)


@dataclass
class Progress:
    """Where a request's output stood at its last response (deltas are taken against it)."""

    chars: int = 0
    tokens: int = 0
    first: bool = True


def response(gen: Generation, progress: Progress, *, text: str, token_ids: list[int], logprobs: list[float] | None,
             finish_reason: str | None, prompt_ids: list[int], num_image_tokens: int, prompt_text: str = "",
             cumulative_logprob: float | None = None, top_logprobs: list[dict[int, dict[str, Any]]] | None = None,
             ) -> Any:
    """The response for the output so far (`text` and `token_ids` cumulative), as the vLLM backend builds it."""
    new_text = text[progress.chars:]
    if progress.first and gen.prepend_input:
        new_text = prompt_text + new_text
    new_ids = token_ids[progress.tokens:]
    out = [pb_utils.Tensor("text_output", np.asarray([new_text.encode("utf-8")], dtype=np.object_))]
    if gen.flags["return_finish_reason"]:
        out.append(pb_utils.Tensor("finish_reason", np.asarray([str(finish_reason).encode()], dtype=np.object_)))
    if gen.flags["return_cumulative_logprob"]:
        out.append(pb_utils.Tensor("cumulative_logprob", np.asarray([cumulative_logprob or 0.0], dtype=np.float32)))
    if gen.flags["return_logprobs"]:
        chunk = "null" if top_logprobs is None else json.dumps(top_logprobs[progress.tokens:])
        out.append(pb_utils.Tensor("logprobs", np.asarray([chunk.encode()], dtype=np.object_)))
    if gen.flags["return_num_input_tokens"]:
        out.append(pb_utils.Tensor("num_input_tokens", np.asarray(len(prompt_ids), dtype=np.uint32)))
    if gen.flags["return_num_output_tokens"]:
        out.append(pb_utils.Tensor("num_output_tokens", np.asarray([len(new_ids)], dtype=np.uint32)))
    if gen.flags["return_token_ids"]:
        if progress.first:
            out.append(pb_utils.Tensor("prompt_token_ids", np.asarray(prompt_ids, dtype=np.int64)))
            out.append(pb_utils.Tensor("num_image_tokens", np.asarray([num_image_tokens], dtype=np.int64)))
        out.append(pb_utils.Tensor("output_token_ids", np.asarray(new_ids, dtype=np.int64)))
        if logprobs is not None and gen.wants_logprobs:
            out.append(pb_utils.Tensor("output_logprobs",
                                       np.asarray(logprobs[progress.tokens:], dtype=np.float32)))
    progress.chars, progress.tokens, progress.first = len(text), len(token_ids), False
    return pb_utils.InferenceResponse(output_tensors=out)


def cancelled() -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(
        message="Request was cancelled", code=pb_utils.TritonError.CANCELLED))


def failed(message: str) -> Any:
    """The vLLM backend's error response: "N/A" in text_output beside the error."""
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor("text_output", np.asarray([b"N/A"], dtype=np.object_))],
        error=pb_utils.TritonError(message))
