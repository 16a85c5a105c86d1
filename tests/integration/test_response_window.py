"""The python-backend policies stream a response per window, not per word (model/response_window.py, issue 24), through
the real Triton server: the same text, far fewer gRPC messages for the gateway to read, and a slow stream still
streams a word at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from tests.model_repository import triton_with_test_models
from toolfabric_server.devstack.triton_server import TritonServer
from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.triton_client import TritonModel

pytestmark = pytest.mark.integration

WORDS = [f"word{i}" for i in range(200)]
TEXT = "<answer>" + " ".join(WORDS) + "</answer>"


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with triton_with_test_models(tmp_path_factory.mktemp("window")).start() as server:
        yield server


def _stream(triton: TritonServer, step: object) -> list[ModelChunk]:
    """The step's responses as the gateway's Triton client reads them: a chunk per gRPC response."""
    prompt = f"<|im_start|>user\n{json.dumps({'script': [step]})}<|im_end|>\n<|im_start|>assistant\n"

    async def read() -> list[ModelChunk]:
        model = TritonModel(triton.grpc_url, idle_timeout_s=30)
        try:
            return [c async for c in model.stream("toolfabric_scripted", prompt, [], {}, "window-test")]
        finally:
            await model.close()

    return asyncio.run(read())


def test_a_fast_stream_comes_in_a_few_responses_with_the_same_text(triton: TritonServer) -> None:
    chunks = _stream(triton, TEXT)
    assert "".join(c.text for c in chunks) == TEXT and chunks[-1].finish_reason == "stop"
    assert sum(c.output_tokens or 0 for c in chunks) == len(TEXT.split())  # words, as the baseline counts: each once
    # The first word at once, the rest with the final response (a word each was 201 responses); a loaded machine
    # may split it a few times more.
    assert chunks[0].text == "<answer>word0 "
    assert 2 <= len(chunks) <= 10, len(chunks)


def test_a_stream_slower_than_the_window_still_sends_each_word_at_once(triton: TritonServer) -> None:
    words = ["one", "two", "three", "four", "five"]
    chunks = _stream(triton, {"text": " ".join(words), "chunk_delay_s": 0.05})
    assert [c.text for c in chunks] == ["one ", "two ", "three ", "four ", "five", ""]  # then the final response
