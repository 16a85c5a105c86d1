"""Streaming channel labels: correct however the text is split, and linear in the stream length."""

from __future__ import annotations

import re
import time

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway.channels import ChannelTracker

STEP = "<think>look closely at the face</think><tool_call>{}</tool_call><answer>Eileen Collins</answer>"


def _labelled(chunks: list[str]) -> list[tuple[pb.Channel, str]]:
    tracker = ChannelTracker()
    return [segment for chunk in chunks for segment in tracker.feed(chunk)]


def _per_char(segments: list[tuple[pb.Channel, str]]) -> list[pb.Channel]:
    """The label of every character outside the think/answer tags (a split tag's own characters may go either way)."""
    labels = [channel for channel, text in segments for _ in text]
    inside_tags = {i for m in re.finditer(r"</?(think|answer)>", STEP) for i in range(m.start(), m.end())}
    return [label for i, label in enumerate(labels) if i not in inside_tags]


def test_every_split_of_a_step_labels_each_character_the_same() -> None:
    whole = _per_char(_labelled([STEP]))
    for size in range(1, 12):
        chunks = [STEP[i:i + size] for i in range(0, len(STEP), size)]
        segments = _labelled(chunks)
        assert "".join(t for _, t in segments) == STEP
        assert _per_char(segments) == whole, f"chunks of {size}"


def test_text_is_labelled_by_the_tag_around_it() -> None:
    segments = _labelled([STEP[i:i + 3] for i in range(0, len(STEP), 3)])
    think = "".join(t for c, t in segments if c == pb.CHANNEL_THINK)
    answer = "".join(t for c, t in segments if c == pb.CHANNEL_ANSWER)
    assert "look closely at the face" in think and "Eileen" not in think
    assert "Eileen Collins" in answer and "look" not in answer and "tool_call" not in answer + think


def _cpu_seconds(chunks: int) -> float:
    best = float("inf")
    for _ in range(3):
        tracker = ChannelTracker()
        started = time.process_time()
        tracker.feed("<think>")
        for _ in range(chunks):
            tracker.feed("ab ")
        best = min(best, time.process_time() - started)
    return best


def test_a_long_stream_costs_linear_time() -> None:
    # 8x the chunks: about 8x the time when linear, about 64x when each chunk rescans the step.
    short, long = _cpu_seconds(2_000), _cpu_seconds(16_000)
    assert long < 24 * max(short, 1e-4), f"2k chunks {short:.4f}s, 16k chunks {long:.4f}s"
