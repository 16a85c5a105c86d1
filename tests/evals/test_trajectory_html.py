"""A report's trajectory reads like the CLI's stream: thinking, each call once, observations as text, images
inline, no step/channel labels."""

from __future__ import annotations

import json

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.evals.trajectory_html import image_blobs, readable, render

SEARCH = [{"query": "Eileen Collins", "results": [
    {"title": "Eileen Collins - NASA", "url": "https://nasa.test/collins", "snippet": "First woman\nto command"}]}]


def _trajectory() -> pb.Trajectory:
    photo = pb.ImageRef(name="<image 1>", blob="sha256:aa", width=64, height=48, origin="user input")
    crop = pb.ImageRef(name="<sub-image 1>", blob="sha256:bb", width=32, height=24, origin="code output 1", step=1)
    call = '{"name": "text_search", "arguments": {"queries": ["Eileen Collins"]}}'
    events = [
        pb.RunEvent(step=0, started=pb.TrajectoryStarted(images=[photo])),
        pb.RunEvent(step=1, text=pb.TextDelta(channel=pb.CHANNEL_THINK, text="<think>Who is")),
        pb.RunEvent(step=1, text=pb.TextDelta(channel=pb.CHANNEL_THINK, text=" this?</think>")),
        pb.RunEvent(step=1, text=pb.TextDelta(channel=pb.CHANNEL_UNSPECIFIED, text=f"<tool_call>{call}</tool_call>")),
        pb.RunEvent(step=1, tool_call=pb.ToolCall(call_id="c1", name="text_search",
                                                  arguments_json='{"queries": ["Eileen Collins"]}')),
        pb.RunEvent(step=1, observation=pb.Observation(call_id="c1", name="text_search", text=json.dumps(SEARCH),
                                                       duration_s=0.012, images=[crop])),
        pb.RunEvent(step=2, text=pb.TextDelta(channel=pb.CHANNEL_ANSWER, text="<answer>Eileen Collins</answer>")),
        pb.RunEvent(step=2, answer=pb.FinalAnswer(text="Eileen Collins")),
        pb.RunEvent(step=2, finished=pb.TrajectoryFinished(status=pb.STATUS_COMPLETED, reason="answered")),
    ]
    return pb.Trajectory(trajectory_id="t1", question="Who is this?", events=events)


def test_the_trajectory_reads_like_the_stream() -> None:
    page = render(_trajectory(), {"sha256:aa": "data:image/png;base64,AAAA"})
    assert "<b>thinking</b> Who is this?" in page  # one block, tags gone
    assert page.count("text_search") == 2  # the call and its observation, not the markup again
    assert "tool_call" not in page and "unspecified" not in page.lower() and "step 1" not in page
    assert "Eileen Collins - NASA" in page and "First woman\nto command" in page  # real newlines, no JSON
    assert "\\n" not in page and "[{&quot;query" not in page
    assert page.count("Eileen Collins</div>") == 1  # the answer once
    assert "src='data:image/png;base64,AAAA'" in page
    assert "&lt;sub-image 1&gt; 32x24 (code output 1)" in page  # an image not fetched is named
    assert "STATUS_COMPLETED: answered" in page


def test_observations_that_are_not_json_are_shown_as_they_are() -> None:
    t = pb.Trajectory(events=[pb.RunEvent(observation=pb.Observation(name="web_visit", text="Page: a < b"))])
    assert "Page: a &lt; b" in render(t, {})


def test_readable_json() -> None:
    assert readable({"a": [1, {"b": "x"}], "c": None}) == "a:\n  - 1\n  - b: x\nc: (none)"


def test_image_blobs_lists_each_image_once_in_order() -> None:
    assert image_blobs(_trajectory()) == ["sha256:aa", "sha256:bb"]
