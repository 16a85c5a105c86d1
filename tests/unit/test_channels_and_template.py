"""Streaming channel labels, the Qwen3-VL chat template, and the image registry names."""

from __future__ import annotations

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.model.chat_template import ImagePart, Message, Qwen3VLTemplate


def test_channels_follow_tags_split_across_chunks() -> None:
    tracker = ChannelTracker()
    out = []
    for chunk in ["<thi", "nk>look", " closely</th", "ink><ans", "wer>Eileen", "</answer>"]:
        out += tracker.feed(chunk)
    think = "".join(t for c, t in out if c == pb.CHANNEL_THINK)
    answer = "".join(t for c, t in out if c == pb.CHANNEL_ANSWER)
    assert "look closely" in think and "Eileen" not in think
    assert "Eileen" in answer and "look" not in answer
    assert "".join(t for _, t in out) == "<think>look closely</think><answer>Eileen</answer>"


def test_qwen3_vl_template_renders_image_placeholders_and_parses_back() -> None:
    template = Qwen3VLTemplate()
    messages = [Message("system", ["sys"]), Message("user", [ImagePart("<image 1>"), "Who?"]),
                Message("assistant", ["<answer>x</answer>"])]
    prompt = template.render(messages)
    assert prompt.startswith("<|im_start|>system\nsys<|im_end|>\n")
    assert "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Who?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    parsed = template.parse(prompt)
    assert [m.role for m in parsed] == ["system", "user", "assistant"]
    assert parsed[1].text() == "Who?" and len(parsed[1].image_names()) == 1
