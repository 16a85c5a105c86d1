"""A model step's chunks read ahead, and the ones that piled up while the previous was being handled merged into one.

An engine streams one response per token; the loop turns each into a TextDelta that goes to the client. When the
gateway keeps up, nothing changes (one chunk, one event). When it falls behind — many trajectories on one event loop,
a loaded machine — the chunks waiting are handled as one: one event for the client, one pass through the channel
tracker, instead of a backlog growing token by token while the engine has long finished (bench/model.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from toolfabric_server.model.backend import ModelChunk

_END = object()


def merge(chunks: list[ModelChunk]) -> ModelChunk:
    """One chunk saying what `chunks` said in order: texts, ids and logprobs joined, output counts summed, the last
    finish reason and prompt count (every response of Triton's vLLM backend repeats it), the first prompt ids."""
    if len(chunks) == 1:
        return chunks[0]
    out = ModelChunk(token_unit=chunks[-1].token_unit)
    for c in chunks:
        out.text += c.text
        out.finish_reason = c.finish_reason or out.finish_reason
        out.input_tokens = c.input_tokens if c.input_tokens is not None else out.input_tokens
        if c.output_tokens is not None:
            out.output_tokens = (out.output_tokens or 0) + c.output_tokens
        if out.prompt_token_ids is None:
            out.prompt_token_ids = c.prompt_token_ids
        out.output_token_ids += c.output_token_ids
        out.output_logprobs += c.output_logprobs
        out.num_image_tokens = c.num_image_tokens if c.num_image_tokens is not None else out.num_image_tokens
        out.token_in = out.token_in or c.token_in
    return out


async def coalesced(chunks: AsyncIterator[ModelChunk], window_s: float = 0.0) -> AsyncGenerator[ModelChunk, None]:
    """`chunks`, read by a task of their own; each item yielded merges every chunk that had arrived by then. An error
    of the stream comes after the chunks before it. Closing or cancelling the consumer cancels the reading, which
    closes the stream (and so cancels the engine request).

    `window_s`: after the first piece (which goes at once), each piece waits up to this long for the chunks after it
    (less when the stream ends): an engine streaming a token at a time costs the gateway an event per token — a
    record write, a message to the client — and tokens a few milliseconds apart are one event instead (issue 24)."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    ended = asyncio.Event()

    async def pump() -> None:
        try:
            async for chunk in chunks:
                queue.put_nowait(chunk)
        except Exception as exc:  # handed to the consumer, in order
            queue.put_nowait(exc)
        else:
            queue.put_nowait(_END)
        finally:
            ended.set()

    reader = asyncio.create_task(pump(), name="model-stream")
    first = True
    try:
        while True:
            items = [await queue.get()]
            if window_s > 0 and not first and isinstance(items[0], ModelChunk) and not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(window_s):
                        await ended.wait()
            first = False
            while not queue.empty() and not isinstance(items[-1], Exception) and items[-1] is not _END:
                items.append(queue.get_nowait())
            tail = items[-1]
            ready = [i for i in items if isinstance(i, ModelChunk)]
            if ready:
                yield merge(ready)
            if isinstance(tail, Exception):
                raise tail
            if tail is _END:
                return
    finally:
        if not reader.done():
            reader.cancel()
            # wait, not `await reader` under suppress(CancelledError): that would also swallow a cancel of the
            # consumer itself (a Cancel, the trajectory's deadline) landing meanwhile.
            await asyncio.wait([reader])
