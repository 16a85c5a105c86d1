"""Dialects: each model family's template, parser and stop strings, chosen per model by settings."""

from __future__ import annotations

import json

import pytest

from services.catalog import catalog
from services.common.errors import ConfigurationError
from services.model.chat_template import ImagePart, Message
from services.model.dialects import DIALECTS, dialect_for, dialect_named
from services.vision.spec import ZoomArgs

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
