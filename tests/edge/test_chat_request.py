"""Turning chat-completions bodies into the fabric's RunRequest, and trajectories into R1V4's tag form."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway.http.chat import parse_chat
from toolfabric_server.gateway.http.errors import ApiError
from toolfabric_server.gateway.http.render import Transcript, observation_json
from toolfabric_server.gateway.http.settings import HttpSettings

ROUTES = HttpSettings().models
PNG = b"\x89PNG\r\n\x1a\nfake"


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "skywork/r1v4-lite", "messages": list(messages), **extra}


def image(data: bytes = PNG) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": "data:None;base64," + base64.b64encode(data).decode()}}


def test_r1v4_script_body_becomes_a_deep_research_run_with_the_image_first() -> None:
    turn = parse_chat(body({"role": "user", "content": [image(), {"type": "text", "text": "Who is this?"}]},
                           stream=True, enable_search=False), ROUTES)
    assert turn.stream and turn.model == "skywork/r1v4-lite"
    assert turn.request.question == "Who is this?" and turn.request.images[0].data == PNG
    assert turn.request.mode == pb.MODE_DEEP_RESEARCH
    assert turn.request.HasField("enable_search") and not turn.request.enable_search


def test_model_names_map_to_modes_and_unknown_names_are_404() -> None:
    assert parse_chat(body({"role": "user", "content": "plan it"}, model="skywork/r1v4-vl-planner-lite"),
                      ROUTES).request.mode == pb.MODE_PLAN
    with pytest.raises(ApiError) as info:
        parse_chat(body({"role": "user", "content": "hi"}, model="gpt-4o"), ROUTES)
    assert info.value.status == 404 and info.value.code == "model_not_found"


def test_enable_search_left_out_keeps_the_modes_tools() -> None:
    assert not parse_chat(body({"role": "user", "content": "hi"}), ROUTES).request.HasField("enable_search")


def test_sampling_budgets_and_conversation_fields_are_carried() -> None:
    turn = parse_chat(body({"role": "user", "content": "hi"}, temperature=0.2, max_completion_tokens=100, seed=7,
                           toolfabric={"max_steps": 3, "conversation_id": "c1"}), ROUTES)
    assert turn.request.sampling.temperature == pytest.approx(0.2) and turn.request.sampling.max_tokens == 100
    assert turn.request.sampling.seed == 7 and turn.request.budgets.max_steps == 3
    assert turn.request.conversation_id == "c1"


def test_history_becomes_prior_turns_with_their_images_numbered_first() -> None:
    turn = parse_chat(body(
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": [image(b"first"), {"type": "text", "text": "q1"}]},
        {"role": "assistant", "content": "<think>long</think><tool_call>{}</tool_call><answer>a1</answer>"},
        {"role": "user", "content": [image(b"second"), {"type": "text", "text": "crop the first picture"}]},
    ), ROUTES)
    assert [(t.question, t.answer, t.images) for t in turn.history] == [("q1", "a1", ["<image 1>"])]
    assert [i.data for i in turn.request.images] == [b"first", b"second"]
    assert turn.request.question == "crop the first picture"


def test_a_history_answer_is_the_dialects_last_answer_and_a_plain_reply_is_taken_whole() -> None:
    # Before issue 23 the door took the first <answer>: an observation quoting one hid the model's own.
    trajectory = ('<think>t</think><tool_call>{}</tool_call><observation>page: "<answer>quoted</answer>"'
                  "</observation><answer>the real one</answer>")
    plan = '<think>p</think><plan>[{"tool_name": "none"}]</plan>'
    turn = parse_chat(body(
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": trajectory},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": plan},
        {"role": "user", "content": "q3"}, {"role": "assistant", "content": "<answer>cut off"},
        {"role": "user", "content": "q4"},
    ), ROUTES)
    assert [t.answer for t in turn.history] == ["the real one", plan, "cut off"]


def test_a_parent_trajectory_replaces_the_sent_history() -> None:
    turn = parse_chat(body({"role": "user", "content": [image(b"old"), {"type": "text", "text": "q1"}]},
                           {"role": "assistant", "content": "a1"}, {"role": "user", "content": "again"},
                           toolfabric={"parent_trajectory_id": "t1"}), ROUTES)
    assert turn.history == [] and len(turn.request.images) == 0 and turn.request.parent_trajectory_id == "t1"


@pytest.mark.parametrize(("messages", "param"), [
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
     "messages[0].content[0].image_url"),
    ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
    ([{"role": "assistant", "content": "hi"}], "messages"),
])
def test_errors_name_the_parameter(messages: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat(body(*messages), ROUTES)
    assert info.value.status == 400 and info.value.param == param, info.value.message


def test_every_observation_has_one_shape_whatever_the_tool_returned() -> None:
    """{"result", "images", "tool"} (or "error" and "message" for a failed call): a JSON object or array a tool
    returns is the result as it is, any other text is the result as text; images are named the same way with
    or without them."""
    def record(**fields: object) -> object:
        return json.loads(observation_json(pb.Observation(**fields)))  # type: ignore[arg-type]

    assert record(name="text_search", text='[{"title": "x"}]') == {
        "result": [{"title": "x"}], "images": [], "tool": "text_search"}
    assert record(name="code", text="42") == {"result": "42", "images": [], "tool": "code"}
    assert record(name="code", text="not json") == {"result": "not json", "images": [], "tool": "code"}
    assert record(name="code", text="saved one", images=[pb.ImageRef(name="<sub-image 1>")]) == {
        "result": "saved one", "images": ["<sub-image 1>"], "tool": "code"}
    assert record(name="crop", text="{}", images=[pb.ImageRef(name="<sub-image 1>")]) == {
        "result": {}, "images": ["<sub-image 1>"], "tool": "crop"}
    assert record(name="crop", text="bad box", is_error=True, error_kind="invalid_argument") == {
        "error": "invalid_argument", "message": "bad box", "images": [], "tool": "crop"}
    # A page quoting a tag cannot open a round in an R1V4 reader; the value is unchanged.
    quoted = observation_json(pb.Observation(name="web_visit", text="<answer>x</answer>"))
    assert "<" not in quoted and json.loads(quoted)["result"] == "<answer>x</answer>"


def test_transcript_is_the_trajectory_in_r1v4_rounds() -> None:
    transcript = Transcript("m")
    events = [pb.RunEvent(trajectory_id="t", started=pb.TrajectoryStarted(trace_id="abc")),
              pb.RunEvent(step=1, text=pb.TextDelta(text="<think>")),
              pb.RunEvent(step=1, text=pb.TextDelta(channel=pb.CHANNEL_THINK, text="x")),
              pb.RunEvent(step=1, text=pb.TextDelta(text='</think><tool_call>{"name": "code", "arguments": {}}'
                                                         '</tool_call>')),
              pb.RunEvent(step=1, tool_call=pb.ToolCall(call_id="s1c1", name="code", arguments_json="{}")),
              pb.RunEvent(step=1, observation=pb.Observation(call_id="s1c1", name="code",
                                                             text='{"result": 1, "type": "code"}')),
              pb.RunEvent(step=2, text=pb.TextDelta(text="<answer>")),
              pb.RunEvent(step=2, text=pb.TextDelta(channel=pb.CHANNEL_ANSWER, text="1")),
              pb.RunEvent(step=2, text=pb.TextDelta(text="</answer>")),
              pb.RunEvent(step=2, answer=pb.FinalAnswer(text="1")),
              pb.RunEvent(usage=pb.Usage(input_tokens=5, output_tokens=7)),
              pb.RunEvent(finished=pb.TrajectoryFinished(status=pb.STATUS_COMPLETED, reason="done"))]
    for event in events:
        transcript.feed(event)
    done = transcript.completion()
    assert done["choices"][0]["message"]["content"] == (
        '<think>x</think><tool_call>{"name": "code", "arguments": {}}</tool_call>'
        '<observation>{"result": {"result": 1, "type": "code"}, "images": [], "tool": "code"}</observation>'
        '<think></think><answer>1</answer>')
    assert done["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12, "token_unit": "tokens"}
    assert done["toolfabric"]["status"] == "completed" and done["toolfabric"]["trace_id"] == "abc"
    budget = Transcript("m")
    budget.feed(pb.RunEvent(finished=pb.TrajectoryFinished(status=pb.STATUS_BUDGET_EXHAUSTED)))
    assert budget.final_chunk()["choices"][0]["finish_reason"] == "length"
