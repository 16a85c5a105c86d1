"""Reading a model step ahead: what a slow consumer gets is what the engine said, in fewer pieces."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.coalesce import coalesced, merge
from toolfabric_server.model.errors import ModelUnavailable


def test_merge_joins_in_order_and_keeps_what_is_said_once() -> None:
    merged = merge([ModelChunk(text="a", prompt_token_ids=[1, 2], output_token_ids=[5], output_logprobs=[-0.1],
                               input_tokens=2, output_tokens=1, num_image_tokens=0, token_in=True),
                    ModelChunk(text="bc", output_token_ids=[6, 7], output_logprobs=[-0.2, -0.3], input_tokens=2,
                               output_tokens=2, prompt_token_ids=None),
                    ModelChunk(text="", finish_reason="stop", input_tokens=2, output_tokens=0)])
    assert (merged.text, merged.finish_reason, merged.prompt_token_ids) == ("abc", "stop", [1, 2])
    assert merged.output_token_ids == [5, 6, 7] and merged.output_logprobs == [-0.1, -0.2, -0.3]
    assert (merged.input_tokens, merged.output_tokens, merged.num_image_tokens, merged.token_in) == (2, 3, 0, True)


async def engine(n: int, fail: bool = False, closed: list[bool] | None = None,
                 delay_s: float = 0.0) -> AsyncIterator[ModelChunk]:
    try:
        for i in range(n):
            await asyncio.sleep(delay_s)
            yield ModelChunk(text=str(i % 10), output_token_ids=[i], output_tokens=1)
        if fail:
            raise ModelUnavailable("model m failed: engine died")
        yield ModelChunk(finish_reason="length")
    finally:
        if closed is not None:
            closed.append(True)


async def test_a_slow_consumer_gets_everything_in_fewer_pieces() -> None:
    got = []
    async for chunk in coalesced(engine(200)):
        got.append(chunk)
        await asyncio.sleep(0.01)  # the gateway busy with the last piece
    assert len(got) < 50
    assert [i for c in got for i in c.output_token_ids] == list(range(200))
    assert sum(c.output_tokens or 0 for c in got) == 200 and got[-1].finish_reason == "length"


async def test_a_consumer_that_keeps_up_gets_every_chunk() -> None:
    got = [c async for c in coalesced(engine(20, delay_s=0.01))]
    # One event per token (the finish, sent right after the last token, may ride with it).
    assert [c.text for c in got][:19] == [str(i % 10) for i in range(19)] and len(got) >= 20
    assert "".join(c.text for c in got) == "".join(str(i % 10) for i in range(20)) and got[-1].finish_reason == "length"


async def test_an_error_comes_after_the_chunks_before_it() -> None:
    got = []
    with pytest.raises(ModelUnavailable, match="engine died"):
        async for chunk in coalesced(engine(30, fail=True)):
            got.append(chunk)
            await asyncio.sleep(0.005)
    assert [i for c in got for i in c.output_token_ids] == list(range(30))


async def test_cancelling_the_consumer_closes_the_engine_stream() -> None:
    closed: list[bool] = []
    first = asyncio.Event()

    async def step() -> None:  # as the loop holds it: closed on the way out
        chunks = coalesced(engine(10**9, closed=closed))
        async with contextlib.aclosing(chunks):
            async for _ in chunks:
                first.set()
                await asyncio.sleep(0.01)

    task = asyncio.create_task(step())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]  # the engine's stream was closed before the step ended


async def test_a_deadline_landing_while_the_stream_closes_still_ends_the_step() -> None:
    """The trajectory's deadline (asyncio.timeout) must not be lost in the closing of a slow engine stream."""

    async def slow_to_close() -> AsyncIterator[ModelChunk]:
        try:
            for _ in range(1000):
                await asyncio.sleep(0.01)
                yield ModelChunk(text="x")
        finally:
            await asyncio.sleep(0.3)  # the engine's stream takes its time to close

    async def step() -> str:
        chunks = coalesced(slow_to_close())
        async with contextlib.aclosing(chunks):
            async for _ in chunks:
                await asyncio.sleep(0.05)
                raise ValueError("the step failed while handling a chunk")  # the stream closes, slowly
        return "completed"

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):  # lands while the stream is closing
            await step()


async def test_a_text_window_makes_tokens_close_together_one_piece() -> None:
    # 60 tokens 2 ms apart (~120 ms): with a 30 ms window, the first goes at once and the rest in a few pieces.
    got = [c async for c in coalesced(engine(60, delay_s=0.002), window_s=0.03)]
    assert got[0].output_token_ids == [0]
    assert 2 <= len(got) <= 12
    assert [i for c in got for i in c.output_token_ids] == list(range(60)) and got[-1].finish_reason == "length"


async def test_the_window_ends_with_the_stream() -> None:
    # A long window does not hold the step's end: the last piece goes when the engine finishes.
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = [c async for c in coalesced(engine(5, delay_s=0.002), window_s=5.0)]
    assert loop.time() - start < 1.0
    assert "".join(c.text for c in got) == "01234" and got[-1].finish_reason == "length"
