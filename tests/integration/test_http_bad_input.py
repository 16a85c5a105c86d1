"""Bad input to the HTTP API: each case gets OpenAI's error JSON with the right status and a message saying
what was wrong, and the gateway goes on serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests

from tests.integration.http_support import Api, api_gateway, data_url, script, user
from toolfabric.cli.main import DEMO_IMAGE
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
LIMIT = 256 * 1024  # TOOLFABRIC_HTTP_MAX_BODY_BYTES of this module's gateway
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(stack, tmp_path_factory.mktemp("http-bad"), TOOLFABRIC_HTTP_MAX_BODY_BYTES=str(LIMIT)) as gw:
        yield gw


def post(api: Api, body: Any = None, *, raw: bytes | None = None, content_type: str | None = "application/json",
         path: str = CHAT) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(f"{api.url}{path}", data=data, headers=headers, timeout=60)


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "test/scripted", "messages": list(messages), **extra}


def test_malformed_json_is_400(api: Api) -> None:
    error = error_of(post(api, raw=b'{"model": "test/scripted", "messages": ['), 400)
    assert error["code"] == "invalid_json" and "not valid JSON" in error["message"]


def test_a_body_that_is_not_an_object_is_400(api: Api) -> None:
    assert "must be a JSON object" in error_of(post(api, [1, 2]), 400)["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(api: Api, content_type: str | None) -> None:
    error = error_of(post(api, chat(user("hi")), content_type=content_type), 415)
    assert "application/json" in error["message"]


def test_unknown_model_is_404_model_not_found_for_the_openai_client(api: Api) -> None:
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found" and "skywork/r1v4-lite" in str(info.value)


def test_a_model_triton_does_not_serve_is_503(api: Api) -> None:
    error = error_of(post(api, chat(user("hi"), model="test/not-served")), 503)
    assert error["code"] == "model_not_ready" and "no_such_triton_model" in error["message"]


@pytest.mark.parametrize(("url", "message"), [
    (data_url(DEMO_IMAGE.read_bytes()[:3000]), "image 1: image data is corrupt or truncated"),
    (data_url(b"%PDF-1.4 not an image"), "image 1: not a recognised image"),
    ("data:image/png;base64,***not base64***", "base64 payload is invalid"),
    ("data:image/png,rawbytes", "must be base64-encoded"),
    ("file:///etc/passwd", "data: URL or an http(s) URL"),
    ("http://127.0.0.1:9/secret.png", "could not download"),  # the SSRF guard refuses loopback
])
def test_an_image_that_fails_validation_is_400(api: Api, url: str, message: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what is this?"}]
    error = error_of(post(api, chat({"role": "user", "content": content})), 400)
    assert message in error["message"] and error["param"] == "messages[0].content[0].image_url"


def test_an_oversized_body_is_413_whether_declared_or_chunked(api: Api) -> None:
    big = chat(user("x" * (LIMIT + 10)))
    assert error_of(post(api, big), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced as the body arrives
        data = json.dumps(big).encode()
        for i in range(0, len(data), 16 * 1024):
            yield data[i:i + 16 * 1024]

    response = requests.post(f"{api.url}{CHAT}", data=chunks(), headers={"Content-Type": "application/json"},
                             timeout=60)
    assert "over the limit" in error_of(response, 413)["message"]


@pytest.mark.parametrize(("messages", "message"), [
    ([{"role": "system", "content": "be brief"}], "no user turn"),
    ([], "messages"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "must be the user's turn"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "{}", "tool_call_id": "1"}], "'tool' messages"),
    ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
    ([{"role": "user", "content": [{"type": "audio", "audio": "..."}]}], "messages[0].content"),
])
def test_messages_without_a_user_turn_to_answer_are_400(api: Api, messages: list[Any], message: str) -> None:
    assert message in error_of(post(api, chat(*messages)), 400)["message"]


@pytest.mark.parametrize(("extra", "param", "message"), [
    ({"temperature": "hot"}, "temperature", "temperature"),
    ({"n": 2}, "n", "n"),
    ({"temperature": 9}, "temperature", "sampling.temperature is 9"),  # the gateway's check names it too
    ({"max_completion_tokens": 10**6}, "max_completion_tokens", "sampling.max_tokens is 1000000"),
    ({"toolfabric": {"deadline_s": 1e9}}, "toolfabric.deadline_s", "deadline_s"),
    ({"toolfabric": {"execute_plan": True}}, "toolfabric.execute_plan", "needs mode plan"),
    ({"stream": "sometimes"}, "stream", "stream"),
    ({"toolfabric": {"max_steps": -1}}, "toolfabric.max_steps", "max_steps"),
    ({"toolfabric": {"warp": 9}}, "toolfabric.warp", "warp"),
])
def test_bad_parameters_are_400_naming_the_parameter(api: Api, extra: dict[str, Any], param: str | None,
                                                     message: str) -> None:
    error = error_of(post(api, chat(user("hi"), **extra)), 400)
    assert error["param"] == param and message in error["message"]


def test_a_model_field_missing_is_400(api: Api) -> None:
    error = error_of(post(api, {"messages": [user("hi")]}), 400)
    assert error["param"] == "model"


def test_wrong_method_and_unknown_path_get_openai_errors(api: Api) -> None:
    assert error_of(requests.get(f"{api.url}{CHAT}", timeout=10), 405)["code"] == "method_not_allowed"
    assert error_of(requests.get(f"{api.url}/v1/nothing-here", timeout=10), 404)["code"] == "not_found"


def test_the_gateway_is_unharmed_after_all_of_it(api: Api) -> None:
    # Garbage on the socket, a request cut off mid-body, then a normal turn.
    import socket

    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"model\": ")
    assert requests.get(f"{api.url}/healthz", timeout=10).status_code == 200
    response = post(api, chat(user(script("<answer>still here</answer>"))))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "<think></think><answer>still here</answer>"
