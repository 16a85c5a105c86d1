"""What fuzzing found, as behaviour: each input below once broke a promise (saved in crashes/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.adapters import parse_model_output
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.http.chat import parse_chat, read_json
from toolfabric_server.gateway.http.errors import ApiError

CRASHES = Path(__file__).resolve().parent / "crashes"


def test_tool_call_nested_past_the_recursion_limit_is_a_problem_for_the_model() -> None:
    step = parse_model_output("<tool_call>" + "[" * 1200 + "</tool_call>")
    assert not step.calls and step.problems == [
        "tool call 1 cannot be read as JSON (nested too deeply): " + "[" * 200]


def test_integer_too_long_for_python_is_a_problem_not_a_crash() -> None:
    step = parse_model_output('<tool_call>{"name": "text_search", "arguments": {"queries": [' + "7" * 4400
                              + "]}}</tool_call>")
    assert not step.calls and "a number too long to read" in step.problems[0]


def test_plan_nested_past_the_recursion_limit_is_a_problem_for_the_model() -> None:
    step = parse_model_output("<plan>" + '[{"a": ' * 1200 + "</plan>")
    assert step.plan is None and step.problems == ["the plan cannot be read as JSON (nested too deeply)"]


def test_run_request_with_a_corrupt_tiff_is_refused_as_an_invalid_argument(redis_server: RedisServer) -> None:
    from tests.fuzz.targets import run_request

    tiff = (CRASHES / "images" / "crash-03a6ea338fb73d32a3c2a0eda93928d85371351c").read_bytes()
    request = pb.RunRequest(question="What is this?", images=[pb.ImageInput(data=tiff)])
    with pytest.raises(InvalidRequest, match=r"image 1: image data is corrupt or truncated \(TypeError"):
        run_request.LOOP.run_until_complete(run_request.VALIDATOR.validate(request))


def test_refused_image_url_is_not_echoed_whole(redis_server: RedisServer) -> None:
    from tests.fuzz.targets import run_request

    url = "http://example.com/" + "a" * 10_000  # over the guard's URL limit
    request = pb.RunRequest(question="What is this?", images=[pb.ImageInput(url=url)])
    with pytest.raises(InvalidRequest) as refused:
        run_request.LOOP.run_until_complete(run_request.VALIDATOR.validate(request))
    message = str(refused.value)
    assert message.startswith("image 1: could not download 'http://example.com/aaa")
    assert "the limit is 4096" in message and len(message) < 1000


def test_plan_step_with_an_object_as_tool_name_is_a_problem_for_the_model() -> None:
    step = parse_model_output('<plan>[{"description": "a", "tool_name": "image_search"}, '
                              '{"description": "b", "tool_name": {}}]</plan>')
    assert step.plan is None and step.problems[0].startswith("plan step 2 needs a tool_name among")


def _chat_error(body: bytes) -> ApiError:
    from tests.fuzz.targets import chat

    with pytest.raises(ApiError) as refused:
        parse_chat(read_json(body), chat.ROUTES)
    return refused.value


def _user_turn(content: object, **body: object) -> bytes:
    return json.dumps({"model": "skywork/r1v4-lite", "messages": [{"role": "user", "content": content}],
                       **body}).encode()


def test_chat_image_url_with_an_unclosed_ipv6_bracket_is_a_bad_request() -> None:
    error = _chat_error((CRASHES / "chat" / "crash-880a0df101d2a29673cdd2c159d8aad315747f5f").read_bytes())
    assert error.status == 400 and "not a valid URL (Invalid IPv6 URL)" in error.message
    assert error.param == "messages[2].content[1].image_url"


def test_chat_body_nested_past_the_recursion_limit_is_invalid_json() -> None:
    error = _chat_error(b"[" * 100_000)
    assert (error.status, error.code) == (400, "invalid_json") and "recursion limit" in error.message


def test_chat_body_with_a_lone_surrogate_is_invalid_json_not_a_broken_protobuf() -> None:
    error = _chat_error(_user_turn("Who is \ud800 this?"))
    assert (error.status, error.code) == (400, "invalid_json")


@pytest.mark.parametrize(("body", "quoted"), [
    (json.dumps({"model": "m" * 10_000, "messages": [{"role": "user", "content": "hi"}]}).encode(), "'mmm"),
    (_user_turn([{"type": "t" * 10_000}]), "Input tag 'ttt"),
    (_user_turn("hi", toolfabric={"k" * 10_000: 1}), "toolfabric.kkk"),
], ids=["model", "part_type", "extension_field"])
def test_chat_error_does_not_echo_a_huge_value_whole(body: bytes, quoted: str) -> None:
    error = _chat_error(body)
    assert quoted in error.message and len(error.message) < 500 and len(error.param or "") <= 100


def test_step_error_does_not_echo_a_huge_trajectory_id_or_mode(redis_server: RedisServer) -> None:
    from tests.fuzz.targets import step
    from toolfabric_server.gateway.step.http import parse_body

    tid = "t" * 100_000
    with pytest.raises(InvalidRequest, match=r"^trajectory id 'ttt.*' appears twice") as twice:
        step.SERVICE._check_batch(parse_body(json.dumps({"trajectory_ids": [tid, tid], "actions": ["", ""]}).encode()))
    assert len(str(twice.value)) < 500
    [item] = parse_body(json.dumps({"trajectory_ids": ["t-1"], "actions": ["a"],
                                    "extra_fields": [{"mode": "x" * 100_000}]}).encode())
    with pytest.raises(InvalidRequest, match=r"^mode 'xxx.*' is not one of") as mode:
        step.SERVICE._new_state(item)
    assert len(str(mode.value)) < 500
