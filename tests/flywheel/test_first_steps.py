"""The trainer's cut of a trajectory after its first steps (flywheel/train.first_steps): whole turns, and
exactly the images those turns show, so TRL's collator fills every placeholder and no image run is split."""

from __future__ import annotations

from typing import Any

from toolfabric_server.flywheel.train import first_steps


def text(role: str, body: str, images: int = 0) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "image", "text": None}] * images + [{"type": "text", "text": body}]}


ROW = {"id": "t", "images": ["in.jpg", "crop.png", "crop2.png"], "messages": [
    text("system", "tools"), text("user", "who?", images=1), text("assistant", "<tool_call>code</tool_call>"),
    text("user", "<observation>crop</observation>", images=1), text("assistant", "<tool_call>search</tool_call>"),
    text("user", "<observation>hits</observation>", images=1), text("assistant", "<answer>x</answer>")]}


def test_the_cut_keeps_whole_turns_up_to_the_nth_assistant_turn_and_their_images() -> None:
    one = first_steps(ROW, 1)
    assert [m["role"] for m in one["messages"]] == ["system", "user", "assistant"] and one["images"] == ["in.jpg"]
    two = first_steps(ROW, 2)
    assert two["messages"][-1]["content"][-1]["text"] == "<tool_call>search</tool_call>"
    assert two["images"] == ["in.jpg", "crop.png"] and two["id"] == "t"


def test_a_trajectory_shorter_than_the_cut_is_kept_whole() -> None:
    assert first_steps(ROW, 5) == ROW
