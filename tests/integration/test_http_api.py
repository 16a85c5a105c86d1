"""The OpenAI-compatible HTTP API through the real stack: the official `openai` client, R1V4's own way of
reading the stream, enable_search, model names, and a client that goes away."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import openai
import pytest
import requests

from tests.integration.http_support import Api, api_gateway, read_stream_like_r1v4, script, user
from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
SEARCH = '<think>look it up</think><tool_call>{"name": "text_search", "arguments": {"queries": ["Eileen Collins"]}}' \
         '</tool_call>'
ANSWER = "<think>found it</think><answer>STS-93</answer>"
SLOW = {"text": "<think>" + "thinking " * 2000 + "</think><answer>too late</answer>", "chunk_delay_s": 0.01}


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(stack, tmp_path_factory.mktemp("http-api")) as running:
        yield running


@pytest.fixture
def oai(api: Api) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0, timeout=120)


def status_of(api: Api, trajectory_id: str) -> int:
    with Client(api.target) as client:
        return client.trajectory(trajectory_id).status


def test_openai_client_streams_a_deep_research_turn_in_r1v4_tag_form(stack: EmbeddedStack) -> None:
    # The embedded stack serves the API with R1V4's model names; the baseline policy runs every service.
    client = openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="unused", max_retries=0, timeout=180)
    stream = client.chat.completions.create(
        model="skywork/r1v4-lite", stream=True,
        messages=[user(DEMO_QUESTION, DEMO_IMAGE.read_bytes())])  # type: ignore[list-item]
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith("<think>")
    assert content.count("<tool_call>") >= 10 and content.count("<observation>") == content.count("<tool_call>")
    observations = [part.split("</observation>")[0] for part in content.split("<observation>")[1:]]
    assert all(isinstance(json.loads(o), dict | list) for o in observations)
    assert content.rstrip().endswith("</answer>") and "Eileen Collins" in content.split("<answer>")[-1]
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    extra = first.model_extra["toolfabric"]  # type: ignore[index]
    assert len(extra["trace_id"]) == 32
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["toolfabric"]["status"] == "completed"  # type: ignore[index]
    with Client(stack.target) as grpc_client:
        recorded = grpc_client.trajectory(extra["trajectory_id"])
    assert recorded.status == pb.STATUS_COMPLETED and "Eileen Collins" in recorded.answer


def test_openai_client_without_streaming_gets_one_message_with_usage(oai: openai.OpenAI, api: Api) -> None:
    reply = oai.chat.completions.create(model="test/scripted", messages=[user(script(SEARCH, ANSWER))])  # type: ignore[list-item]
    content = reply.choices[0].message.content or ""
    assert content.startswith(SEARCH)
    observation = json.loads(content.split("<observation>")[1].split("</observation>")[0])
    assert "Eileen Collins" in json.dumps(observation)
    assert content.endswith(ANSWER)
    assert reply.choices[0].finish_reason == "stop" and reply.model == "test/scripted"
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert (reply.usage.model_extra or {})["token_unit"] == "words"  # a scripted policy counts words, and says so
    extra = reply.model_extra["toolfabric"]  # type: ignore[index]
    assert extra["answer"] == "STS-93" and extra["usage"]["tool_calls"] == {"text_search": 1}
    assert reply.id == f"chatcmpl-{extra['trajectory_id']}"
    assert status_of(api, extra["trajectory_id"]) == pb.STATUS_COMPLETED


def test_a_reader_written_like_r1v4_batch_stream_gets_the_whole_trajectory(api: Api) -> None:
    body = {"messages": [user(script(SEARCH, ANSWER))], "model": "test/scripted", "stream": True,
            "enable_search": True}
    for path in ("/api/v1/chat/completions", "/v1/chat/completions"):
        response = requests.post(f"{api.url}{path}", json=body, headers={"Authorization": "Bearer x"},
                                 stream=True, timeout=60)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        full, events = read_stream_like_r1v4(response)
        assert events[-1] == {"done": True}
        assert full.startswith(SEARCH + "<observation>") and full.endswith("</observation>" + ANSWER)
        assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_usage_chunk_comes_last_when_asked_for(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="test/scripted", stream=True,
                                              stream_options={"include_usage": True},
                                              messages=[user(script(ANSWER))]))  # type: ignore[list-item]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_enable_search_false_turns_the_search_tools_off(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="test/scripted", messages=[user(script(SEARCH, ANSWER))],  # type: ignore[list-item]
                                        extra_body={"enable_search": False})
    observation = json.loads((reply.choices[0].message.content or "").split("<observation>")[1]
                             .split("</observation>")[0])
    assert observation["error"] == "unknown_tool" and "turned off" in observation["message"]
    assert reply.model_extra["toolfabric"]["usage"].get("tool_calls", {}) == {}  # type: ignore[index]


def test_models_lists_the_configured_names_with_their_modes(oai: openai.OpenAI) -> None:
    models = {m.id: m.model_extra["toolfabric"]["mode"] for m in oai.models.list()}  # type: ignore[index]
    assert models["skywork/r1v4-lite"] == "deep_research"
    assert models["skywork/r1v4-vl-planner-lite"] == "plan"


def test_toolfabric_budgets_ride_in_the_namespaced_extra_field(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="test/scripted", messages=[user(script(SEARCH, SEARCH, ANSWER))],  # type: ignore[list-item]
                                        extra_body={"toolfabric": {"max_steps": 1}})
    assert reply.choices[0].finish_reason == "length"
    assert reply.model_extra["toolfabric"]["status"] == "budget_exhausted"  # type: ignore[index]


def test_health_and_readiness(api: Api) -> None:
    assert requests.get(f"{api.url}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{api.url}/readyz", timeout=5).status_code == 200


def test_a_streaming_client_that_goes_away_cancels_the_trajectory(api: Api) -> None:
    body = {"messages": [user(script(SLOW))], "model": "test/scripted", "stream": True}
    response = requests.post(f"{api.url}/v1/chat/completions", json=body, stream=True, timeout=60)
    lines = response.iter_lines(decode_unicode=True)
    first = json.loads(next(line for line in lines if line)[6:])
    tid = first["toolfabric"]["trajectory_id"]
    response.close()  # the client vanishes mid-stream
    assert wait_for_status(api, tid) == pb.STATUS_CANCELLED


def test_a_waiting_non_streaming_client_that_goes_away_cancels_the_trajectory(stack: EmbeddedStack,
                                                                               api: Api) -> None:
    question = script(SLOW, f"nonce {time.time_ns()}")
    payload = json.dumps({"messages": [user(question)], "model": "test/scripted"}).encode()
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        tid = wait_for_trajectory(stack, question)
        assert status_of(api, tid) == pb.STATUS_RUNNING
    assert wait_for_status(api, tid) == pb.STATUS_CANCELLED


def wait_for_trajectory(stack: EmbeddedStack, question: str, timeout_s: float = 10) -> str:
    """The id of the trajectory recorded for `question` (the gateway records it as it starts)."""
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for key in client.scan_iter("toolfabric:trajectory:*"):
                # Only the record's hash: its event lists (`:events`, the open run of deltas `:events:open`) are not.
                if b":events" not in key and client.hget(key, "question") == question.encode():
                    return key.decode().rsplit(":", 1)[1]
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError(f"no trajectory recorded for {question!r}")


def wait_for_status(api: Api, trajectory_id: str, timeout_s: float = 10) -> int:
    deadline = time.monotonic() + timeout_s
    status = status_of(api, trajectory_id)
    while status == pb.STATUS_RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
        status = status_of(api, trajectory_id)
    return status


def test_a_failed_trajectory_says_so_in_the_stream_and_as_an_error_reply(api: Api, oai: openai.OpenAI) -> None:
    body = {"messages": [user(script({"fail": "the model server fell over"}))], "model": "test/scripted",
            "stream": True}
    response = requests.post(f"{api.url}/v1/chat/completions", json=body, stream=True, timeout=60)
    _, events = read_stream_like_r1v4(response)
    error = next(e for e in events if "error" in e)
    assert error["error"]["code"] == "model_unavailable" and "fell over" in error["error"]["message"]
    assert events[-2]["toolfabric"]["status"] == "failed" and events[-1] == {"done": True}
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="test/scripted",
                                    messages=[user(script({"fail": "the model server fell over"}))])  # type: ignore[list-item]
    assert info.value.status_code == 503 and "fell over" in info.value.message


def test_readiness_turns_off_while_the_gateway_drains(stack: EmbeddedStack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import sys

    from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until

    grpc_port, http_port = free_port(), free_port()
    env = stack.env() | {"TOOLFABRIC_GATEWAY_PORT": str(grpc_port), "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": "0",
                         "TOOLFABRIC_HTTP_PORT": str(http_port), "TOOLFABRIC_GATEWAY_SHUTDOWN_DELAY_S": "8"}
    gateway = Child("gateway-drain", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], tmp_path, env=env)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(lambda: port_open(http_port), 30, "HTTP API", gateway.proc, gateway.log)
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
        gateway.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 6  # within the shutdown delay: still serving, no longer ready
        while requests.get(f"{url}/readyz", timeout=5).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        assert gateway.proc.wait(30) == 0
    finally:
        gateway.stop()


def test_an_http_image_url_is_downloaded_through_the_ssrf_guard(stack: EmbeddedStack, oai: openai.OpenAI,
                                                                 api: Api) -> None:
    # The demo site is the one private address the stack's guard allows; anything else private is refused.
    content = [{"type": "image_url", "image_url": {"url": f"{stack.site_url}coffee.jpg"}},
               {"type": "text", "text": script("<answer>a coffee</answer>")}]
    reply = oai.chat.completions.create(model="test/scripted", messages=[{"role": "user", "content": content}])  # type: ignore[list-item]
    with Client(api.target) as client:
        started = client.trajectory(reply.model_extra["toolfabric"]["trajectory_id"]).events[0].started  # type: ignore[index]
    assert [(i.name, i.mime_type) for i in started.images] == [("<image 1>", "image/jpeg")]
    assert started.images[0].width > 100
