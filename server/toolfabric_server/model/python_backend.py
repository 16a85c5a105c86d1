"""Serving a text policy on Triton's python backend with the vLLM backend's tensor contract.

Decoupled and streaming: the text goes out a word (chunk) at a time, the first at once and then the
words of each `response_window_ms` in one response (`text_output` holds only the new text;
model/response_window.py), and a final response carries what was still held, `finish_reason` and
token counts, flagged final. Each request runs on its own thread so concurrent trajectories do not
queue behind each other, and a cancelled request stops streaming. Only importable inside Triton's
python stub.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend stub

from toolfabric_server.model import response_window

# A policy returns the step's text, or (text, seconds between chunks) to stream it slowly.
Policy = Callable[[str], "str | tuple[str, float]"]
_CHUNK = re.compile(r"\S+\s*|\s+")


def _scalar(request, name: str, default):  # type: ignore[no-untyped-def]
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value


class StreamingPolicyModel:
    policy: Policy
    # Pause between streamed chunks: 0 by default; set to mimic a real model's token rate in demos.
    chunk_delay_s: float = 0.0
    window_s: float = response_window.DEFAULT_MS / 1000

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        if "chunk_delay_s" in params:
            self.chunk_delay_s = float(params["chunk_delay_s"]["string_value"])
        self.window_s = response_window.window_s(config)

    def execute(self, requests):  # type: ignore[no-untyped-def]
        for request in requests:
            threading.Thread(target=self._serve, args=(request,), daemon=True).start()
        return None

    def _serve(self, request) -> None:  # type: ignore[no-untyped-def]
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            prompt = _scalar(request, "text_input", "")
            sampling = json.loads(_scalar(request, "sampling_parameters", "{}") or "{}")
            step = type(self).policy(prompt)
            text, delay = (step, self.chunk_delay_s) if isinstance(step, str) else step
            max_tokens = int(sampling.get("max_tokens", 1 << 30))
            chunks = _CHUNK.findall(text)
            finish = "stop"
            if len(chunks) > max_tokens:
                chunks, finish = chunks[:max_tokens], "length"
            window = response_window.ResponseWindow(self.window_s)
            held: list[str] = []
            for sent, chunk in enumerate(chunks):
                if request.is_cancelled():
                    pb_utils.Logger.log_info(
                        f"request {request.request_id()} cancelled after {sent} of {len(chunks)} chunks")
                    sender.send(flags=final)
                    return
                held.append(chunk)
                if window.due():
                    out = pb_utils.Tensor("text_output", np.array(["".join(held).encode("utf-8")], dtype=np.object_))
                    sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
                    held.clear()
                if delay:
                    time.sleep(delay)
            tail = [
                pb_utils.Tensor("text_output", np.array(["".join(held).encode("utf-8")], dtype=np.object_)),
                pb_utils.Tensor("finish_reason", np.array([finish.encode()], dtype=np.object_)),
            ]
            # Token counts of a policy that is not a model: whitespace-separated words, stated as such.
            if _scalar(request, "return_num_input_tokens", False):
                tail.append(pb_utils.Tensor("num_input_tokens", np.array([len(prompt.split())], dtype=np.uint32)))
            if _scalar(request, "return_num_output_tokens", False):
                tail.append(pb_utils.Tensor("num_output_tokens", np.array([len(chunks)], dtype=np.uint32)))
            sender.send(pb_utils.InferenceResponse(output_tensors=tail), flags=final)
        except Exception as exc:  # report to the client instead of killing the stub
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")),
                        flags=final)
