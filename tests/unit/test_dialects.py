"""Dialects: each model family's template, parser and stop strings, chosen per model by settings."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.catalog import catalog
from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.engine import plans
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.model.baseline.policy import next_step, read_situation
from toolfabric_server.model.chat_template import ImagePart, Message
from toolfabric_server.model.dialects import DEFAULT_DIALECT, DIALECTS, Answer, Dialect, dialect_for, dialect_named
from toolfabric_server.model.dialects.instructions import read_mode
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.tools.vision.spec import ZoomArgs

DEEPEYES = dialect_named("deepeyes")
QWEN3VL = dialect_named("qwen3vl")


def _call(name: str, **arguments: object) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def test_models_get_their_configured_dialect_and_others_the_default() -> None:
    per_model = {"deepeyes-7b": "deepeyes"}
    assert dialect_for("deepeyes-7b", per_model, "qwen3vl").name == "deepeyes"
    assert dialect_for("r1v4", per_model, "qwen3vl").name == "qwen3vl"


def test_an_unknown_dialect_is_a_configuration_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown dialect 'llama'.*deepeyes, qwen3vl"):
        dialect_for("m", {"m": "llama"}, "qwen3vl")


def test_every_registered_dialect_has_stop_strings_that_open_its_observations() -> None:
    for dialect in DIALECTS.values():
        assert dialect.stop and dialect.stop[0] == dialect.observation_tags[0]


def test_deepeyes_pixel_zoom_becomes_a_zoom_on_the_original_image_in_pixels() -> None:
    step = DEEPEYES.parse("<think>the sign is small</think>"
                          + _call("image_zoom_in_tool", bbox_2d=[120, 40, 380, 200], label="sign"))
    assert step.problems == [] and step.think == "the sign is small"
    [call] = step.calls
    assert call.name == "zoom_in"
    assert call.arguments == {"image": "<image 1>", "coords": "pixel", "bbox": [120, 40, 380, 200]}
    # … and the catalog's zoom_in accepts exactly that.
    args = catalog().get("zoom_in").arguments.model_validate(call.arguments)  # type: ignore[union-attr]
    assert isinstance(args, ZoomArgs) and args.bbox == [120, 40, 380, 200] and args.coords == "pixel"


def test_deepeyes_rotate_becomes_rotate_of_the_original_image() -> None:
    [call] = DEEPEYES.parse(_call("image_rotate_tool", angle=90)).calls
    assert (call.name, call.arguments) == ("rotate", {"image": "<image 1>", "angle": 90})


def test_deepeyes_zoom_without_a_box_still_reaches_validation() -> None:
    [call] = DEEPEYES.parse(_call("image_zoom_in_tool", label="x")).calls
    assert call.name == "zoom_in" and "bbox" not in call.arguments


def test_deepeyes_answers_and_reports_malformed_output() -> None:
    assert DEEPEYES.parse("<think>ok</think><answer>a red bus</answer>").answer == "a red bus"
    broken = DEEPEYES.parse('<tool_call>{"name": "image_zoom_in_tool", "arguments": {</tool_call>')
    assert broken.calls == [] and "not valid JSON" in broken.problems[0]
    assert "never closed" in DEEPEYES.parse("<answer>half").problems[0]
    assert "neither a tool call nor an answer" in DEEPEYES.parse("hmm").problems[0]


def test_deepeyes_does_not_read_r1v4_tag_syntax() -> None:
    # <text_search> is R1V4's; for DeepEyes it is just text.
    assert DEEPEYES.parse("<text_search>who</text_search>").calls == []
    assert QWEN3VL.parse("<text_search>who</text_search>").calls[0].name == "text_search"


def test_deepeyes_declares_zoom_and_rotate_in_its_own_words() -> None:
    schemas = [t.function_schema() for t in catalog().visible("general")]
    names = [s["function"]["name"] for s in DEEPEYES.declare_tools(schemas)]
    assert names[:2] == ["image_zoom_in_tool", "image_rotate_tool"]
    assert "zoom_in" not in names and "rotate" not in names and "code" in names
    zoom = DEEPEYES.declare_tools(schemas)[0]["function"]["parameters"]["properties"]["bbox_2d"]
    assert "pixels" in zoom["description"]
    assert QWEN3VL.declare_tools(schemas) == schemas


def test_deepeyes_template_is_qwen25_vl_with_its_default_system_turn() -> None:
    prompt = DEEPEYES.template.render([Message("user", [ImagePart("<image 1>"), "What is written?"])])
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>What is written?" in prompt
    with_system = DEEPEYES.template.render([Message("system", ["sys"]), Message("user", ["q"])])
    assert with_system.startswith("<|im_start|>system\nsys<|im_end|>") and "helpful assistant" not in with_system


# --- The one reading of an answer (issue 23: the parser, the chat door and scoring used three) ---

@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_the_answer_is_the_last_one_and_an_unclosed_one_runs_to_the_end(dialect: Dialect) -> None:
    assert dialect.answer_in("<think>t</think><answer> Eileen Collins </answer>") == Answer("Eileen Collins", True)
    assert dialect.answer_in("<answer>quoted</answer> then <answer>final</answer>") == Answer("final", True)
    assert dialect.answer_in("<answer>first <answer>second</answer>") == Answer("second", True)
    assert dialect.answer_in("<think>x</think><answer>cut off") == Answer("cut off", False)
    assert dialect.answer_in("<ANSWER>x</ANSWER>") is None  # the tags are the model's tokens, case and all
    assert dialect.answer_in("<think>no answer</think>") is None


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_a_step_answers_with_its_last_closed_answer_only(dialect: Dialect) -> None:
    # The parser used to take the first answer; it now reads the same one every reader does.
    assert dialect.parse("<think>t</think><answer>draft</answer> <answer>final</answer>").answer == "final"
    # An answer cut off does not finish the run: the model is told, as before.
    step = dialect.parse("<answer>draft</answer> <answer>cut")
    assert step.answer is None and any("<answer> was opened but never closed" in p for p in step.problems)


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_markup_is_any_tag_of_the_dialects_steps(dialect: Dialect) -> None:
    assert dialect.has_markup("<think>x</think>") and dialect.has_markup('<tool_call>{"name": "x"}</tool_call>')
    assert not dialect.has_markup("Eileen Collins, 1999 (see <image 1>)")
    assert dialect.has_markup("<plan>[]</plan>") == (dialect.name == "qwen3vl")  # DeepEyes does not plan


def test_the_default_dialect_is_the_settings_default() -> None:
    assert DEFAULT_DIALECT.name == ModelSettings().default_dialect


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_the_stream_is_labelled_in_the_dialects_channel_tags(dialect: Dialect) -> None:
    tracker = ChannelTracker(dialect)
    out = tracker.feed(f"<{dialect.think_tag}>hm</{dialect.think_tag}><{dialect.answer_tag}>A") + tracker.feed(
        f"</{dialect.answer_tag}>")
    assert [(c, t) for c, t in out if t in ("hm", "A")] == [(pb.CHANNEL_THINK, "hm"), (pb.CHANNEL_ANSWER, "A")]


# --- The prompt's grammar: instructions per mode and observation blocks, written and read by the dialect ---

@dataclass
class _Made:
    name: str
    width: int
    height: int
    origin: str


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_instructions_name_only_the_dialects_own_tags(dialect: Dialect) -> None:
    opening, closing = dialect.observation_tags
    for mode in names.MODES:
        text = dialect.system_prompt(mode, [])
        assert text.startswith(f"Mode: {mode}\n") and read_mode(text) == mode
        assert f"<{dialect.answer_tag}>…</{dialect.answer_tag}>" in text or mode == names.PLAN
    research = dialect.system_prompt(names.DEEP_RESEARCH, [])
    assert f"{opening}…{closing}" in research
    assert ("<observation>" in research) == (opening == "<observation>")  # DeepEyes is told <tool_response>


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_observation_blocks_read_back_exactly_as_written(dialect: Dialect) -> None:
    made = [_Made("<sub-image 1>", 64, 48, "code")]
    parts = [*dialect.render_observation("code", "c1", '{"result": "ok"}', None, made),
             *dialect.render_observation("web_visit", "c2", "the page did not load", "unavailable", []),
             *dialect.render_observation("model_output", "-", "<answer> was never closed", "model_output", [])]
    text = "".join(p if isinstance(p, str) else f"<|vision_start|>{p.name}<|vision_end|>" for p in parts)
    blocks = dialect.read_observations(text)
    assert [(b.tool, b.call_id, b.is_error) for b in blocks] == [
        ("code", "c1", False), ("web_visit", "c2", True), ("model_output", "-", True)]
    assert blocks[0].body == '{"result": "ok"}' and "<sub-image 1> (64x48, code)" in blocks[0].image_listing()
    assert blocks[1].text == "error (unavailable): the page did not load"


def test_the_baseline_reads_the_prompt_the_dialect_writes() -> None:
    """The scripted baseline plays the model from the rendered prompt alone: the mode, the question and every
    observation (its JSON, its error, its new images) must come back as written."""
    observation = [*QWEN3VL.render_observation("code", "c1", '{"result": "42"}', None,
                                               [_Made("<sub-image 1>", 64, 48, "code")]),
                   *QWEN3VL.render_observation("text_search", "c2", "search is down", "unavailable", [])]
    prompt = QWEN3VL.template.render([
        Message("system", [QWEN3VL.system_prompt(names.GENERAL, [])]),
        Message("user", [ImagePart("<image 1>"), "How tall is it?"]),
        Message("assistant", ["<think>look</think>" + _call("code", code="print(42)")]),
        Message("user", observation),
    ])
    seen = read_situation(prompt)
    assert (seen.mode, seen.question, seen.input_images, seen.steps_done) == (names.GENERAL, "How tall is it?", 1, 1)
    code, search = seen.observations
    assert (code.tool, code.call_id, code.json(), code.new_images(), code.is_error) == (
        "code", "c1", {"result": "42"}, ["<sub-image 1>"], False)
    assert (search.tool, search.call_id, search.is_error, search.json()) == ("text_search", "c2", True, None)


def test_the_baseline_reads_the_plan_steps_the_loop_writes() -> None:
    """Executing a plan, the loop joins a step's observations and the next step's instruction in one user turn
    (engine/plans.py add/tell); the baseline must read back the plan, which step it is asked for, the results so
    far and the question, as written, and fill the step's placeholder from them."""
    plan = [{"description": "Search the question", "tool_name": "text_search", "parameters": {"query": "tallest"}},
            {"description": "Read the best result", "tool_name": "web_visit",
             "parameters": {"url": "[Best URL from Step 1]"}},
            {"description": "Verify", "tool_name": "none", "parameters": {}}]
    found = [{"query": "tallest", "results": [{"title": "Tower", "url": "https://tower.test/"}]}]
    messages = [Message("system", [QWEN3VL.system_prompt(names.PLAN, [])]),
                Message("user", ["Which is the tallest tower?"]),
                Message("assistant", [f"<think>plan</think><plan>{json.dumps(plan)}</plan>"])]
    plans.add(messages, QWEN3VL.render_observation("text_search", "p1", json.dumps(found), None, []))
    plans.tell(messages, plans.fill_instruction(2, 3, plan[1], QWEN3VL))
    seen = read_situation(QWEN3VL.template.render(messages))
    assert (seen.mode, seen.question, seen.steps_done, seen.plan, seen.plan_step) == (
        names.PLAN, "Which is the tallest tower?", 1, plan, 2)
    [search] = seen.observations
    assert (search.tool, search.call_id, search.is_error, search.json()) == ("text_search", "p1", False, found)
    assert _call("web_visit", urls=["https://tower.test/"]) in next_step(QWEN3VL.template.render(messages)).replace(
        "\n", "")

    plans.add(messages, QWEN3VL.render_observation("web_visit", "p2", "the page did not load", "unavailable", []))
    plans.tell(messages, plans.answer_instruction(3, 3, plan[2], QWEN3VL))
    seen = read_situation(QWEN3VL.template.render(messages))
    assert (seen.question, seen.plan_step, [(o.tool, o.is_error) for o in seen.observations]) == (
        "Which is the tallest tower?", 3, [("text_search", False), ("web_visit", True)])


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_plan_step_instructions_are_in_the_dialects_tags(dialect: Dialect) -> None:
    verify = {"tool_name": "none", "description": "check"}
    fill = {"tool_name": "text_search", "description": "who", "parameters": {"query": "[Person from Step 1]"}}
    think = f"<{dialect.think_tag}>…</{dialect.think_tag}>"
    assert plans.answer_instruction(2, 2, verify, dialect).endswith(f"{think}{dialect.render_answer('…')}.")
    assert f"Reply with {think} then <tool_call>" in plans.fill_instruction(1, 2, fill, dialect)
