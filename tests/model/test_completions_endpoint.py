"""The completions backend against a real `vllm serve` (CPU, make-tiny's Qwen3), through the real gateway, Redis and
workers, the stack started as `toolfabric up --model-endpoint URL --endpoint-checkpoint DIR` starts it: the fabric
renders the prompt, sends it as ids, streams raw /v1/completions; random weights write garbage, which the loop turns
into error observations within the budgets; cancel closes the stream and vLLM stops generating."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model.cancelling import cancel_mid_generation
from tests.model.vllm_serve import SERVED, VllmServe
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack import neural_models
from toolfabric_server.devstack.model_endpoint import ModelEndpoint
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.export.tokens import segments
from toolfabric_server.model.completions_client import CompletionsModel
from toolfabric_server.model.settings import CompletionsEndpoint, ModelSettings
from toolfabric_server.model.tokenizer import ModelTokenizer


@pytest.fixture(scope="module")
def checkpoint(tiny_models: Path) -> Path:
    return neural_models.checkpoint("qwen3", ModelSettings(), cache_dir=tiny_models)


@pytest.fixture(scope="module")
def server(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServe]:
    with VllmServe(checkpoint, tmp_path_factory.mktemp("vllm-serve")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(server: VllmServe, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    endpoint = ModelEndpoint.ask(server.url, checkpoint=str(checkpoint))
    assert endpoint.model == SERVED  # the name asked of the server
    with EmbeddedStack(tmp_path_factory.mktemp("endpoint-stack"), demo_site=False, model_endpoint=endpoint) as running:
        yield running


def test_a_trajectory_runs_in_real_tokens_within_its_budgets(stack: EmbeddedStack, checkpoint: Path) -> None:
    with Client(stack.target, timeout_s=300) as client:
        result = client.ask("Who commanded STS-93?", max_steps=3, max_tokens=24, seed=1)  # the default model: vLLM's
    assert result.status == "STATUS_BUDGET_EXHAUSTED", result.reason
    assert [o for o in result.observations if o.is_error], "random weights wrote a well-formed step?"
    records = [e.tokens for e in result.events if e.HasField("tokens")]
    assert len(records) == 3 and all(r.token_in for r in records)
    assert all(0 < len(r.completion_token_ids) <= 24 for r in records)  # max_tokens honoured
    assert all(len(r.completion_logprobs) == len(r.completion_token_ids) for r in records)
    # The ids vLLM reports it used are the ids the fabric sent: every step extends the last prompt + completion.
    found, mismatch = segments(pb.Trajectory(events=result.events))
    assert mismatch is None and found[0].steps == [1, 2, 3]
    tokenizer = ModelTokenizer.load(checkpoint)
    assert tokenizer.decode(list(records[0].prompt_token_ids)).endswith("<|im_start|>assistant\n")
    # Usage is vLLM's own count, in tokens: every prompt's length and every completion's.
    assert result.usage.token_unit == "tokens"
    assert result.usage.input_tokens == sum(r.prompt_reused + len(r.prompt_token_ids) for r in records)
    assert result.usage.output_tokens == sum(len(r.completion_token_ids) for r in records)


async def test_max_tokens_and_stop_strings_are_honoured(server: VllmServe, checkpoint: Path) -> None:
    """The backend the gateway uses, straight against the server: the same seed with and without a stop string."""
    model = CompletionsModel("tiny", CompletionsEndpoint(url=server.url, model=SERVED), "", 300)
    prompt = "<|im_start|>user\nWho flew STS-93?<|im_end|>\n<|im_start|>assistant\n"
    sampling = {"max_tokens": 16, "seed": 7, "temperature": 1.0, "ignore_eos": True}
    try:
        free = [c async for c in model.stream("tiny", prompt, [], sampling, "t:1")]
        text = "".join(c.text for c in free)
        assert [c.finish_reason for c in free if c.finish_reason] == ["length"]
        assert len([i for c in free for i in c.output_token_ids]) == 16
        assert [(c.input_tokens, c.output_tokens) for c in free if c.input_tokens] == [
            (len(ModelTokenizer.load(checkpoint).encode(prompt)), 16)]
        cut = text[len(text) // 2:][:3]
        stopped = [c async for c in model.stream("tiny", prompt, [], {**sampling, "stop": [cut]}, "t:2")]
        said = "".join(c.text for c in stopped)
        assert [c.finish_reason for c in stopped if c.finish_reason] == ["stop"]
        assert cut not in said and text.startswith(said)
    finally:
        await model.close()


def test_cancel_aborts_the_server_request(stack: EmbeddedStack, server: VllmServe) -> None:
    with Client(stack.target, timeout_s=300) as client:
        cancel_mid_generation(client, server.running, stop_within_s=10)
    assert "Aborted request" in server.log.read_text()

