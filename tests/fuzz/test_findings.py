"""What fuzzing found, as behaviour: each input below once broke a promise (saved in crashes/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.exceptions import InvalidRequest
from services.devstack.redis_server import RedisServer
from tests.fuzz.adapters import parse_model_output
from toolfabric.v1 import fabric_pb2 as pb

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
