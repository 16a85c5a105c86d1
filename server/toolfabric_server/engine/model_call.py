"""A step's model call: the conversation rendered in the dialect's template, streamed from the `ModelBackend`
port, its text emitted as labelled deltas as it arrives, its tokens and timings counted."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.engine import tracing
from toolfabric_server.engine.events import EventSink
from toolfabric_server.engine.ports import ChannelSplitter, ModelBackend
from toolfabric_server.engine.tokens import StepTokens
from toolfabric_server.engine.trajectory import Trajectory
from toolfabric_server.model.chat_template import ImagePart
from toolfabric_server.model.coalesce import coalesced
from toolfabric_server.model.dialects import Dialect


class ModelCall:
    def __init__(self, model: ModelBackend, channels: Callable[[Dialect], ChannelSplitter],
                 text_window_s: float = 0.0) -> None:
        self._model, self._channels, self._text_window_s = model, channels, text_window_s

    async def __call__(self, trajectory: Trajectory, sink: EventSink, sampling: dict[str, Any]) -> str:
        """The model's text for this step (its deltas and tokens already emitted)."""
        model, dialect = trajectory.scope.model, trajectory.dialect
        prompt = dialect.template.render(trajectory.messages)
        # The dialect's stop strings end the step where the fabric's observation would begin.
        asked = {**sampling, "stop": list(dialect.stop)} if dialect.stop else sampling
        by_name = {i.name: i for i in trajectory.registry.images}
        shown = [p.name for m in trajectory.messages for p in m.parts if isinstance(p, ImagePart)]
        images = [await trajectory.registry.data(by_name[n]) for n in shown]
        sizes = [(by_name[n].width, by_name[n].height) for n in shown]
        input_ids = trajectory.tokens.prompt_for(prompt, sizes)
        # Only to a backend that is given ids: one written before token-in takes the call without them.
        extra: dict[str, Any] = {"input_ids": input_ids} if input_ids is not None else {}
        got, usage = StepTokens(), trajectory.usage
        tracker, pieces = self._channels(dialect), []
        started = time.monotonic()
        with tracing.tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT,
                                                  attributes=tracing.chat_attributes(model, sampling)) as span:
            first_token: float | None = None
            finish: str | None = None
            span_input = span_output = 0
            request_id = f"{trajectory.scope.trajectory_id}:{sink.step}"
            # Read ahead: chunks that pile up while one is being handled, or arrive within the text window of each
            # other, come as one (model/coalesce.py); closed on the way out however the step ends, so a
            # cancel closes the engine stream at once.
            chunks = coalesced(self._model.stream(model, prompt, images, asked, request_id, **extra),
                               self._text_window_s)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    got.add(chunk)
                    usage.token_unit = chunk.token_unit
                    if chunk.text:
                        if first_token is None:
                            first_token = time.monotonic() - started
                        pieces.append(chunk.text)
                        for channel, text in tracker.feed(chunk.text):
                            await sink(text=pb.TextDelta(channel=channel, text=text))
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
                    # Triton's vLLM backend sends num_input_tokens (the prompt's) on every response and
                    # num_output_tokens per response (this response's tokens): the first is kept, the second summed.
                    if chunk.input_tokens is not None:
                        span_input = chunk.input_tokens
                    if chunk.output_tokens is not None:
                        span_output += chunk.output_tokens
            usage.input_tokens += span_input
            usage.output_tokens += span_output
            tracing.chat_finished(span, model, span_input, span_output, first_token, finish)
            metrics.model_step(model, first_token, int(span_input or 0), int(span_output or 0),
                               time.monotonic() - started - first_token if first_token is not None else None)
        usage.phases["model"] += time.monotonic() - started
        text = "".join(pieces)
        tokens = trajectory.tokens.record(prompt, text, sizes, input_ids, got)
        if tokens is not None:
            usage.image_tokens += sum(tokens.image_tokens)
            await sink(tokens=tokens)
        return text
