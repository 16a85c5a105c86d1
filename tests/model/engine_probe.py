"""Talking to an engine on Triton directly, on the vLLM backend's contract (what the tests and bench/model.py compare
the fabric against), and reading the engine's own count of unfinished requests from Triton's metrics port."""

from __future__ import annotations

import base64
import json
import queue
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient


def tensor(name: str, dtype: str, values: list[Any]) -> grpcclient.InferInput:
    kinds = {"BYTES": np.object_, "BOOL": bool, "INT64": np.int64}
    arr = np.array(values, dtype=kinds[dtype])
    t = grpcclient.InferInput(name, list(arr.shape), dtype)
    t.set_data_from_numpy(arr)
    return t


@dataclass
class Generated:
    text: str = ""
    finish_reason: str | None = None
    prompt_ids: list[int] = field(default_factory=list)
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    output_counts: int = 0
    responses: int = 0
    image_tokens: int = 0


def generate(url: str, model: str, prompt: str, sampling: dict[str, Any], input_ids: list[int] | None = None,
             on_first: Callable[[], None] | None = None, images: list[bytes] = ()) -> Generated:  # type: ignore[assignment]
    inputs = [tensor("text_input", "BYTES", [prompt.encode()]), tensor("stream", "BOOL", [True]),
              tensor("sampling_parameters", "BYTES", [json.dumps(sampling).encode()]),
              tensor("exclude_input_in_output", "BOOL", [True])]
    inputs += [tensor(f, "BOOL", [True]) for f in ("return_finish_reason", "return_num_input_tokens",
                                                     "return_num_output_tokens", "return_token_ids")]
    if images:
        inputs.append(tensor("image", "BYTES", [base64.b64encode(b) for b in images]))
    if input_ids is not None:
        inputs.append(tensor("input_ids", "INT64", input_ids))
    out = Generated()
    done: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: done.put((result, error)))
    try:
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while True:
            result, error = done.get()
            if error is not None:
                raise RuntimeError(str(error))
            out.responses += 1
            if out.responses == 1 and on_first is not None:
                on_first()
            out.text += "".join(v.decode() for v in result.as_numpy("text_output") or [])
            for name, target in (("prompt_token_ids", out.prompt_ids), ("output_token_ids", out.output_ids),
                                 ("output_logprobs", out.logprobs)):
                value = result.as_numpy(name)
                if value is not None:
                    target.extend(value.tolist())
            image_tokens = result.as_numpy("num_image_tokens")
            if image_tokens is not None:
                out.image_tokens = int(image_tokens[0])
            counts = result.as_numpy("num_output_tokens")
            out.output_counts += int(counts.sum()) if counts is not None else 0
            reason = result.as_numpy("finish_reason")
            if reason is not None and reason[0] != b"None":
                out.finish_reason = reason[0].decode()
            if result.get_response().parameters["triton_final_response"].bool_param:
                return out
    finally:
        client.stop_stream()
        client.close()


def unfinished_requests(metrics_port: int, model: str) -> float:
    """The engine's own count of requests it still holds (gauge toolfabric_engine_unfinished_requests)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    match = re.search(rf'toolfabric_engine_unfinished_requests{{model="{model}"}} ([0-9.e+-]+)', text)
    if match is None:
        raise AssertionError("the engine publishes no toolfabric_engine_unfinished_requests gauge")
    return float(match.group(1))
