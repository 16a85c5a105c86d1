"""A model on an OpenAI-compatible completions server (TOOLFABRIC_MODEL_ENDPOINTS) through the real gateway, Redis
and workers: the server here is a small local one speaking OpenAI's completions SSE format (tests/support); the same
path against a real `vllm serve` is tests/model/test_completions_endpoint.py (`make test-model`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import extra_gateway
from tests.support.completions_server import CompletionsServer, Reply
from tests.support.tokenizer import make_checkpoint
from toolfabric import Client, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.export.tokens import segments
from toolfabric_server.model.tokenizer import ModelTokenizer

pytestmark = pytest.mark.integration
MODEL = "team-model"
CODE = '<think>compute</think><tool_call>{"name": "code", "arguments": {"code": "print(6 * 7)"}}</tool_call>'
ANSWER = "<think>the code said 42</think><answer>42</answer>"


@pytest.fixture(scope="module")
def endpoint(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CompletionsServer,
                                                                                                 ModelTokenizer]]:
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny")
    endpoints = {MODEL: {"url": "URL", "model": "team/served-name"}, "not-listed": {"url": "URL"},
                 "down": {"url": f"http://127.0.0.1:{free_port()}/v1"}}
    with CompletionsServer(models=("team/served-name",), api_key="sk-team") as server:
        for e in endpoints.values():
            e["url"] = e["url"].replace("URL", server.url)
        with extra_gateway(stack, tmp_path_factory.mktemp("gateway"), TOOLFABRIC_MODEL_ENDPOINTS=json.dumps(endpoints),
                           TOOLFABRIC_MODEL_ENDPOINT_API_KEY="sk-team",
                           TOOLFABRIC_MODEL_CHECKPOINTS=json.dumps({MODEL: str(checkpoint)})) as target:
            yield target, server, ModelTokenizer.load(checkpoint)


def spoken(tokenizer: ModelTokenizer, text: str, piece_chars: int = 12) -> Any:
    """A reply streaming `text` in pieces, each with its token ids, ended by the model's own <|im_end|>."""
    pieces = [text[i:i + piece_chars] for i in range(0, len(text), piece_chars)]
    end = tokenizer.token_id("<|im_end|>")
    ids = [tokenizer.encode(p) for p in pieces]
    ids[-1] = [*ids[-1], end]
    return Reply(pieces, token_ids=ids, logprobs=[[-0.25] * len(i) for i in ids])


def test_a_trajectory_runs_on_the_completions_server(endpoint: tuple[str, CompletionsServer, ModelTokenizer]) -> None:
    target, server, tokenizer = endpoint
    server.seen.clear()
    server.replies[:] = [spoken(tokenizer, CODE), spoken(tokenizer, ANSWER)]
    with Client(target, timeout_s=120) as client:
        result = client.ask("What is 6 times 7?", model=MODEL, mode="general", max_tokens=64, seed=3)
    assert result.status == "STATUS_COMPLETED" and result.answer == "42", result.reason
    assert any("42" in o.text and o.name == "code" for o in result.observations)
    # The fabric rendered the prompt itself and sent it as ids (token-in); the server's name, not the fabric's.
    first, second = (s.body for s in server.seen)
    assert first["model"] == "team/served-name" and first["stream"] is True and first["max_tokens"] == 64
    assert first["stop"] == ["<observation>"]  # the dialect's stop strings, where its observation would begin
    assert tokenizer.decode(first["prompt"]).endswith("What is 6 times 7?<|im_end|>\n<|im_start|>assistant\n")
    records = [e.tokens for e in result.events if e.HasField("tokens")]
    assert len(records) == 2 and all(r.token_in for r in records)
    completion_1 = list(records[0].completion_token_ids)
    assert second["prompt"][:len(first["prompt"]) + len(completion_1)] == first["prompt"] + completion_1
    found, mismatch = segments(pb.Trajectory(events=result.events))
    assert mismatch is None and found[0].steps == [1, 2]
    assert all(v == pytest.approx(-0.25) for r in records for v in r.completion_logprobs)
    # Usage in the server's tokens: its usage events, summed over the two steps.
    assert result.usage.token_unit == "tokens"
    assert result.usage.input_tokens == len(first["prompt"]) + len(second["prompt"])
    assert result.usage.output_tokens == sum(len(r.completion_token_ids) for r in records)


def test_cancel_closes_the_server_stream(endpoint: tuple[str, CompletionsServer, ModelTokenizer]) -> None:
    target, server, _ = endpoint
    before = server.disconnected
    server.replies[:] = [Reply(["<think>", "long"], stall_s=60.0)]
    with Client(target, timeout_s=120) as client:
        finished = None
        for event in client.events("Think forever.", model=MODEL):
            if event.WhichOneof("event") == "text":
                t0 = time.monotonic()
                client.cancel(event.trajectory_id)
            if event.WhichOneof("event") == "finished":
                finished = event.finished
    assert finished is not None and finished.status == pb.STATUS_CANCELLED
    assert server.wait_idle(5.0), "the server still streams for a cancelled trajectory"
    assert server.disconnected == before + 1 and time.monotonic() - t0 < 5


def test_server_errors_fail_the_trajectory_as_model_unavailable(
        endpoint: tuple[str, CompletionsServer, ModelTokenizer]) -> None:
    target, server, _ = endpoint
    server.replies[:] = [Reply(status=400, error="This model's maximum context length is 4096 tokens.")]
    with Client(target, timeout_s=120) as client:
        result = client.ask("Too long?", model=MODEL)
        assert result.status == "STATUS_FAILED"
        [error] = [e.error for e in result.events if e.HasField("error")]
        assert error.code == "model_unavailable" and "HTTP 400: This model's maximum context length" in error.message
        server.replies[:] = [Reply(raw=["data: <html>502 Bad Gateway</html>"])]
        result = client.ask("Garbage?", model=MODEL)
        assert result.status == "STATUS_FAILED" and "malformed event" in result.reason


def test_a_model_the_server_does_not_list_or_a_server_down_is_refused_at_run(
        endpoint: tuple[str, CompletionsServer, ModelTokenizer]) -> None:
    target, server, _ = endpoint
    with Client(target, timeout_s=60) as client:
        with pytest.raises(Unavailable, match=f"'not-listed' is not being served by the completions server at "
                                              f"{server.url}"):
            client.ask("Anyone?", model="not-listed")
        with pytest.raises(Unavailable, match="is unreachable"):
            client.ask("Anyone?", model="down")
        # Triton's models are still Triton's on the same gateway.
        assert client.ask(json.dumps({"script": ["<answer>ok</answer>"]}), model="toolfabric_scripted").answer == "ok"


def test_up_asks_the_server_for_its_model(endpoint: tuple[str, CompletionsServer, ModelTokenizer],
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolfabric_server.common.errors import ConfigurationError
    from toolfabric_server.devstack.model_endpoint import ModelEndpoint

    _, server, _ = endpoint
    monkeypatch.setenv("TOOLFABRIC_MODEL_ENDPOINT_API_KEY", "sk-team")
    found = ModelEndpoint.ask(server.url + "/")
    assert found.model == "team/served-name" and found.url == server.url
    env = found.gateway_env()
    assert json.loads(env["TOOLFABRIC_MODEL_ENDPOINTS"]) == {"team/served-name": {"url": server.url}}
    assert env["TOOLFABRIC_MODEL_DEFAULT_MODEL"] == "team/served-name"
    with pytest.raises(ConfigurationError, match=r"does not serve 'other' \(it serves team/served-name\)"):
        ModelEndpoint.ask(server.url, "other")
    with pytest.raises(ConfigurationError, match=r"has no tokenizer\.json"):
        ModelEndpoint.ask(server.url, checkpoint=str(tmp_path))
    monkeypatch.setenv("TOOLFABRIC_MODEL_ENDPOINT_API_KEY", "wrong")
    with pytest.raises(ConfigurationError, match="401"):
        ModelEndpoint.ask(server.url)
