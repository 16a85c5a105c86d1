"""The completions backend against a local server speaking OpenAI's completions SSE format (tests/support): what it
sends, how it reads the stream, and that every failure is the same ModelUnavailable the Triton path gives. The same
backend against a real `vllm serve` is tests/model/test_completions_endpoint.py (`make test-model`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tests.support.completions_server import CompletionsServer, Reply
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.model.backend import ModelChunk
from toolfabric_server.model.completions_client import CompletionsModel
from toolfabric_server.model.errors import ModelUnavailable
from toolfabric_server.model.routing import ModelRouter
from toolfabric_server.model.settings import CompletionsEndpoint


@pytest.fixture
def server() -> Iterator[CompletionsServer]:
    with CompletionsServer(models=("served-name",), api_key="sk-test") as running:
        yield running


def backend(url: str, idle_timeout_s: float = 10.0, **fields: object) -> CompletionsModel:
    endpoint = CompletionsEndpoint(url=url, model="served-name", api_key=SecretStr("sk-test"), **fields)  # type: ignore[arg-type]
    return CompletionsModel("fabric-name", endpoint, "", idle_timeout_s)


async def collect(model: CompletionsModel, prompt: str = "hello", input_ids: list[int] | None = None,
                  sampling: dict[str, object] | None = None, images: list[bytes] | None = None) -> list[ModelChunk]:
    try:
        return [c async for c in model.stream("fabric-name", prompt, images or [], sampling or {"max_tokens": 8},
                                              "traj:1", input_ids)]
    finally:
        await model.close()


async def test_a_step_streams_text_finish_ids_logprobs_and_usage(server: CompletionsServer) -> None:
    server.replies.append(Reply(["<think>", "hm</think>"], token_ids=[[5], [6, 7]], logprobs=[[-0.5], [-1.0, -2.0]],
                                finish_reason="length", prompt_tokens=12))
    chunks = await collect(backend(server.url), sampling={"max_tokens": 3, "stop": ["</tool_call>"], "seed": 4,
                                                          "temperature": 0.7, "top_k": 5})
    assert "".join(c.text for c in chunks) == "<think>hm</think>"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["length"]
    assert [i for c in chunks for i in c.output_token_ids] == [5, 6, 7]
    assert [v for c in chunks for v in c.output_logprobs] == [-0.5, -1.0, -2.0]
    assert chunks[0].prompt_token_ids == [1, 2, 3] and not any(c.token_in for c in chunks)
    assert [(c.input_tokens, c.output_tokens) for c in chunks if c.input_tokens is not None] == [(12, 3)]
    assert all(c.token_unit == "tokens" for c in chunks)
    # What went over the wire: the raw rendered prompt, streaming, the fabric's sampling, usage and ids asked for.
    [seen] = server.seen
    assert seen.body == {"model": "served-name", "prompt": "hello", "stream": True,
                         "stream_options": {"include_usage": True}, "return_token_ids": True, "logprobs": 0,
                         "max_tokens": 3, "stop": ["</tool_call>"], "seed": 4, "temperature": 0.7, "top_k": 5}
    assert seen.headers["authorization"] == "Bearer sk-test" and seen.headers["x-request-id"] == "traj:1"


async def test_token_in_sends_the_ids_as_the_prompt(server: CompletionsServer) -> None:
    server.replies.append(Reply(["x"], token_ids=[[9]]))
    chunks = await collect(backend(server.url), input_ids=[11, 12, 13])
    assert server.seen[0].body["prompt"] == [11, 12, 13]
    assert chunks[0].prompt_token_ids == [11, 12, 13] and all(c.token_in for c in chunks)


async def test_a_server_without_the_token_ids_extension_is_not_asked(server: CompletionsServer) -> None:
    server.replies.append(Reply(["x", "y"]))
    chunks = await collect(backend(server.url, token_ids=False))
    assert "return_token_ids" not in server.seen[0].body
    assert not any(c.output_token_ids for c in chunks) and all(c.prompt_token_ids is None for c in chunks)
    assert "".join(c.text for c in chunks) == "xy"


@pytest.mark.parametrize(("reply", "says"), [
    (Reply(status=400, error="max_tokens must be at least 1, got 0."),
     "model fabric-name failed: .*/completions answered HTTP 400: max_tokens must be at least 1, got 0."),
    (Reply(status=404, error="The model `served-name` does not exist."), "HTTP 404: The model `served-name` does not"),
    (Reply(raw=["data: {not json"]), "malformed event in the stream of fabric-name .not a JSON object.: {not json"),
    (Reply(raw=['data: {"choices": [{"text": 3}]}']), "malformed event .*3 where str belongs"),
    (Reply(raw=['data: {"choices": [{"text": "a", "token_ids": ["x"]}]}']), "malformed event .*'x' where int"),
    (Reply(raw=['data: {"choices": [], "usage": {"prompt_tokens": -1}}', "data: [DONE]"]), "malformed usage"),
    (Reply(["a", "b"], done=False), "closed the stream of fabric-name before its end"),
    (Reply(["a"], error="EngineCore died"), "model fabric-name failed: EngineCore died"),
])
async def test_every_failure_is_model_unavailable_and_says_what(server: CompletionsServer, reply: Reply,
                                                                 says: str) -> None:
    server.replies.append(reply)
    with pytest.raises(ModelUnavailable, match=says):
        await collect(backend(server.url))


async def test_a_wrong_key_is_named(server: CompletionsServer) -> None:
    model = CompletionsModel("fabric-name", CompletionsEndpoint(url=server.url, model="served-name"), "sk-wrong", 5)
    with pytest.raises(ModelUnavailable, match="HTTP 401: Unauthorized"):
        await collect(model)


async def test_a_server_that_is_down_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelUnavailable, match=f"model service at {url} is unavailable: ConnectError"):
        await collect(backend(url))
    with pytest.raises(ModelUnavailable, match=f"model service at {url} is unreachable"):
        await backend(url).serves("fabric-name")


async def test_a_silent_server_hits_the_idle_timeout(server: CompletionsServer) -> None:
    server.replies.append(Reply(["a"], stall_s=3.0))
    with pytest.raises(ModelUnavailable, match=r"sent nothing for 0\.3s \(TOOLFABRIC_MODEL_STREAM_IDLE_TIMEOUT_S\)"):
        await collect(backend(server.url, idle_timeout_s=0.3))


async def test_images_are_refused_by_name(server: CompletionsServer) -> None:
    with pytest.raises(ModelUnavailable, match=r"which takes no images; this step's prompt has 1"):
        await collect(backend(server.url), images=[b"png"])
    assert server.seen == []


async def test_cancelling_the_step_closes_the_stream(server: CompletionsServer) -> None:
    server.replies.append(Reply(["a"], stall_s=30.0))
    model = backend(server.url)
    first = asyncio.Event()

    async def step() -> None:
        async for _ in model.stream("fabric-name", "p", [], {}, "traj:1"):
            first.set()

    task = asyncio.create_task(step())
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await model.close()
    assert await asyncio.to_thread(server.wait_idle, 5.0), "the server still generates for a cancelled step"
    assert server.disconnected == 1


async def test_serves_asks_the_model_list(server: CompletionsServer) -> None:
    model = backend(server.url)
    try:
        assert await model.serves("fabric-name") and await model.ready("fabric-name")
        other = CompletionsModel("x", CompletionsEndpoint(url=server.url, model="not-served"), "sk-test", 5)
        assert not await other.serves("x")
        await other.close()
    finally:
        await model.close()


async def test_the_router_sends_each_model_to_its_backend(server: CompletionsServer) -> None:
    class Triton:
        asked: list[str] = []

        async def stream(self, model, prompt, images, sampling, request_id, input_ids=None):  # type: ignore[no-untyped-def]
            self.asked.append(model)
            yield ModelChunk(text="from triton", finish_reason="stop")

        async def serves(self, model: str) -> bool:
            return True

        async def ready(self, model: str) -> bool:
            return True

        async def close(self) -> None:
            pass

    server.replies.append(Reply(["from the server"]))
    router = ModelRouter(Triton(), {"fabric-name": backend(server.url)},
                         {"fabric-name": f"the completions server at {server.url}"})
    try:
        assert [c.text async for c in router.stream("baseline", "p", [], {}, "r")] == ["from triton"]
        got = "".join([c.text async for c in router.stream("fabric-name", "p", [], {}, "r")])
        assert got == "from the server" and Triton.asked == ["baseline"]
        assert router.server_of("baseline") == "Triton" and server.url in router.server_of("fabric-name")
    finally:
        await router.close()
