"""Malformed model output, emitted by a scripted model through the real Triton server, becomes an
error observation the model reads on its next step; the trajectory goes on to its answer."""

from __future__ import annotations

import json

import pytest

from toolfabric import Client

pytestmark = pytest.mark.integration


def run_script(client: Client, *steps: object, **options: object):  # type: ignore[no-untyped-def]
    return client.ask(json.dumps({"script": list(steps)}), model="toolfabric_scripted", **options)


def only_error(result):  # type: ignore[no-untyped-def]
    errors = [o for o in result.observations if o.is_error]
    assert len(errors) == 1, [(o.name, o.text) for o in result.observations]
    return errors[0]


CASES = {
    "broken_json": ('<think>x</think><tool_call>{"name": "text_search", "arguments": {"queries": ["a"]</tool_call>',
                    "model_output", "not valid JSON"),
    "unknown_tool": ('<tool_call>{"name": "teleport", "arguments": {}}</tool_call>', "unknown_tool",
                     "unknown tool 'teleport'"),
    "missing_argument": ('<tool_call>{"name": "text_search", "arguments": {}}</tool_call>', "invalid_argument",
                         "queries: Field required"),
    "wrong_type": ('<tool_call>{"name": "web_visit", "arguments": {"urls": 42}}</tool_call>', "invalid_argument",
                   "urls: Input should be a valid list"),
    "unclosed_tag": ('<think>x</think><tool_call>{"name": "text_search", "arguments": {"queries": ["a"]}}',
                     "model_output", "<tool_call> was opened but never closed"),
    "neither_call_nor_answer": ("<think>just musing</think> I am not sure.", "model_output",
                                "neither a tool call nor an answer"),
    "arguments_not_object": ('<tool_call>{"name": "code", "arguments": [1, 2]}</tool_call>', "model_output",
                             '"arguments" must be a JSON object'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_step_becomes_error_observation_and_loop_continues(client: Client, case: str) -> None:
    bad, kind, message = CASES[case]
    result = run_script(client, bad, "<think>recovering</think><answer>recovered</answer>")
    error = only_error(result)
    assert error.error_kind == kind
    assert message in error.text
    assert result.status == "STATUS_COMPLETED" and result.answer == "recovered"


def test_the_model_reads_the_error_on_its_next_step(client: Client) -> None:
    result = run_script(client, '<tool_call>{"name": "teleport", "arguments": {}}</tool_call>', "<answer>ok</answer>")
    recorded = client.trajectory(result.trajectory_id)
    # The second model step was prompted with the error observation: the scripted model saw one prior step.
    steps = sorted({e.step for e in recorded.events if e.WhichOneof("event") == "text"})
    assert steps == [1, 2]
    assert "unknown tool 'teleport'" in only_error(result).text


def test_tag_syntax_calls_tools_like_the_json_syntax(client: Client) -> None:
    result = run_script(client, "<think>search</think><text_search>Eileen Collins</text_search>",
                        "<answer>done</answer>")
    assert [c.name for c in result.tool_calls] == ["text_search"]
    assert json.loads(result.tool_calls[0].arguments_json) == {"queries": ["Eileen Collins"]}
    assert not result.observations[0].is_error


def test_a_failing_tool_call_does_not_stop_its_siblings(client: Client) -> None:
    step = ('<tool_call>{"name": "code", "arguments": {"code": "raise ValueError(\\"boom\\")"}}</tool_call>'
            '<tool_call>{"name": "code", "arguments": {"code": "print(6 * 7)"}}</tool_call>')
    result = run_script(client, step, "<answer>ok</answer>")
    first, second = result.observations
    assert first.is_error and "boom" in first.text
    assert not second.is_error and "42" in second.text
    assert result.status == "STATUS_COMPLETED"


def test_max_steps_budget_ends_the_trajectory(client: Client) -> None:
    looping = '<tool_call>{"name": "text_search", "arguments": {"queries": ["again"]}}</tool_call>'
    result = run_script(client, *([looping] * 5), max_steps=3)
    assert result.status == "STATUS_BUDGET_EXHAUSTED" and "max_steps=3" in result.reason
    assert len(result.tool_calls) == 3


def test_tool_call_budget_refuses_extra_calls(client: Client) -> None:
    three = "".join(f'<tool_call>{{"name": "text_search", "arguments": {{"queries": ["q{i}"]}}}}</tool_call>'
                    for i in range(3))
    result = run_script(client, three, "<answer>ok</answer>", max_tool_calls=2)
    refused = [o for o in result.observations if o.error_kind == "budget_exhausted"]
    assert len(refused) == 1 and "budget of 2 calls" in refused[0].text
    assert result.answer == "ok"


def test_model_failure_mid_trajectory_fails_it_with_the_reason_and_the_gateway_goes_on(client: Client) -> None:
    ok_step = '<tool_call>{"name": "text_search", "arguments": {"queries": ["Eileen Collins"]}}</tool_call>'
    result = run_script(client, ok_step, {"fail": "GPU fell off the bus"})
    assert result.status == "STATUS_FAILED" and "GPU fell off the bus" in result.reason
    errors = [e.error for e in result.events if e.WhichOneof("event") == "error"]
    assert len(errors) == 1 and errors[0].fatal and errors[0].code == "model_unavailable"
    assert client.trajectory(result.trajectory_id).status == 4  # STATUS_FAILED, recorded
    assert run_script(client, "<answer>still here</answer>").answer == "still here"
