"""Parsing model steps in both R1V4 syntaxes, and reporting what cannot be understood."""

from __future__ import annotations

from toolfabric_server.model.dialect import parse_step


def test_json_tool_calls_are_parsed_in_order() -> None:
    step = parse_step('<think>plan</think>\n<tool_call>{"name": "text_search", "arguments": {"queries": ["a"]}}'
                      '</tool_call><tool_call>{"name": "web_visit", "arguments": {"urls": ["http://x"]}}</tool_call>')
    assert step.think == "plan"
    assert [(c.name, c.arguments) for c in step.calls] == [("text_search", {"queries": ["a"]}),
                                                          ("web_visit", {"urls": ["http://x"]})]
    assert step.problems == [] and step.answer is None


def test_tag_syntax_maps_to_the_tools() -> None:
    step = parse_step("<text_search>who</text_search><image_search><image></image_search>"
                      "<web_content>https://a.b</web_content><code>```python\nprint(1)\n```</code>")
    assert [(c.name, c.arguments) for c in step.calls] == [
        ("text_search", {"queries": ["who"]}), ("image_search", {"image_paths": ["<image>"]}),
        ("web_visit", {"urls": ["https://a.b"]}), ("code", {"code": "print(1)"})]


def test_answer_is_returned() -> None:
    step = parse_step("<think>done</think><answer>Eileen Collins</answer>")
    assert step.answer == "Eileen Collins" and step.calls == [] and step.problems == []


def test_calls_inside_think_are_not_run() -> None:
    step = parse_step('<think>maybe <tool_call>{"name": "x", "arguments": {}}</tool_call></think><answer>a</answer>')
    assert step.calls == [] and step.answer == "a"


def test_double_encoded_arguments_are_accepted() -> None:
    step = parse_step('<tool_call>{"name": "code", "arguments": "{\\"code\\": \\"1\\"}"}</tool_call>')
    assert step.calls[0].arguments == {"code": "1"}


def test_broken_json_is_reported_with_position() -> None:
    step = parse_step('<tool_call>{"name": "code", "arguments": {</tool_call>')
    assert step.calls == [] and "not valid JSON" in step.problems[0] and "position" in step.problems[0]


def test_unclosed_answer_is_reported() -> None:
    step = parse_step("<think>x</think><answer>half an answ")
    assert step.answer is None and any("<answer> was opened but never closed" in p for p in step.problems)


def test_empty_step_is_reported() -> None:
    assert "neither a tool call nor an answer" in parse_step("hmm").problems[0]


def test_calls_and_answer_together_run_the_calls() -> None:
    step = parse_step('<tool_call>{"name": "code", "arguments": {"code": "1"}}</tool_call><answer>a</answer>')
    assert len(step.calls) == 1 and step.answer is None and "both calls tools and answers" in step.problems[0]


def test_plan_is_validated() -> None:
    good = ('<plan>[{"description": "s", "tool_name": "text_search", "parameters": {"query": "q"}},'
            '{"description": "v", "tool_name": "none", "parameters": {}}]</plan>')
    assert parse_step(good).plan is not None
    bad = '<plan>[{"description": "s", "tool_name": "text_search", "parameters": {}}]</plan>'
    step = parse_step(bad)
    assert step.plan is None and "2 to 10 steps" in step.problems[0]
    no_verify = ('<plan>[{"description": "s", "tool_name": "text_search", "parameters": {}},'
                 '{"description": "s", "tool_name": "web_visit", "parameters": {}}]</plan>')
    assert "verification step" in parse_step(no_verify).problems[0]
