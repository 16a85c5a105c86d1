"""One deep-research turn through every real component, asserted event by event."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
SERVICE = {"code": "vision", "image_search": "search", "text_search": "search", "web_visit": "fetch"}


@pytest.fixture(scope="module")
def demo_run(stack: EmbeddedStack):  # type: ignore[no-untyped-def]
    with Client(stack.target, timeout_s=180) as client:
        return client.ask(DEMO_QUESTION, images=[DEMO_IMAGE])


def test_demo_question_is_answered_from_what_the_tools_found(demo_run) -> None:  # type: ignore[no-untyped-def]
    assert demo_run.status == "STATUS_COMPLETED", demo_run.reason
    assert "Eileen Collins" in demo_run.answer
    assert "STS-93" in demo_run.answer
    assert "eileen-collins.html" in demo_run.answer or "sts-93.html" in demo_run.answer


def test_event_stream_is_ordered_and_complete(demo_run) -> None:  # type: ignore[no-untyped-def]
    events = demo_run.events
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds[-2] == "usage"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.trajectory_id for e in events} == {demo_run.trajectory_id}
    started = events[0].started
    assert started.images[0].name == "<image 1>" and started.images[0].width == 400
    assert started.budgets.max_steps > 0 and started.budgets.max_tool_calls > 0
    # Thinking was streamed in several pieces before the answer event.
    thinking = [e for e in events if e.WhichOneof("event") == "text" and e.text.channel == pb.CHANNEL_THINK]
    assert len(thinking) > 5
    assert kinds.index("answer") > kinds.index("text")
    # Every tool call gets exactly one observation, after it.
    calls = {e.tool_call.call_id: i for i, e in enumerate(events) if e.WhichOneof("event") == "tool_call"}
    observed = {e.observation.call_id: i for i, e in enumerate(events) if e.WhichOneof("event") == "observation"}
    assert set(calls) == set(observed)
    assert all(observed[c] > calls[c] for c in calls)


def test_deep_research_uses_every_service_with_parallel_steps(demo_run) -> None:  # type: ignore[no-untyped-def]
    calls = demo_run.tool_calls
    assert len(calls) >= 10
    assert {SERVICE[c.name] for c in calls} == {"vision", "search", "fetch"}
    per_step = Counter(e.step for e in demo_run.events if e.WhichOneof("event") == "tool_call")
    assert max(per_step.values()) >= 2
    failures = [(o.name, o.text) for o in demo_run.observations if o.is_error]
    assert failures == []
    usage = demo_run.usage
    assert sum(usage.tool_calls.values()) == len(calls)
    assert usage.tool_calls["code"] == 2 and usage.tool_calls["web_visit"] == 2
    assert usage.phase_seconds["total"] >= usage.phase_seconds["tools"] > 0
    assert usage.output_tokens > 0
    # The baseline is a policy, not a model: its counts are words and say so; it has no token ids to record.
    assert usage.token_unit == "words" and usage.image_tokens == 0
    assert not [e for e in demo_run.events if e.HasField("tokens")]


def test_images_made_by_code_are_fed_back_and_used_by_later_tools(demo_run, client: Client) -> None:  # type: ignore[no-untyped-def]
    made = [(e.step, img) for e in demo_run.events if e.WhichOneof("event") == "observation"
            for img in e.observation.images]
    assert [img.name for _, img in made][:2] == ["<sub-image 1>", "<sub-image 2>"]
    first_step, first = made[0]
    assert (first.width, first.height) == (400, 400)  # the 200x200 upper-centre crop of the photo, enlarged 2x
    later_uses = [e for e in demo_run.events if e.WhichOneof("event") == "tool_call" and e.step > first_step
                  and "<sub-image 1>" in e.tool_call.arguments_json]
    assert {e.tool_call.name for e in later_uses} >= {"image_search", "code"}
    # The bytes behind the reference are a real image of the stated size.
    image = client.image(first.blob)
    assert image.mime_type == "image/png" and (image.width, image.height) == (400, 400)


def test_recorded_trajectory_matches_the_stream(demo_run, client: Client) -> None:  # type: ignore[no-untyped-def]
    recorded = client.trajectory(demo_run.trajectory_id)
    assert recorded.status == pb.STATUS_COMPLETED
    assert recorded.answer == demo_run.answer
    assert recorded.question == DEMO_QUESTION
    streamed = [e for e in demo_run.events if e.WhichOneof("event") != "text"]
    stored = [e for e in recorded.events if e.WhichOneof("event") != "text"]
    assert [e.SerializeToString() for e in stored] == [e.SerializeToString() for e in streamed]
    # Text deltas are stored merged: one event per step and channel, same text.
    def text_of(events: list[pb.RunEvent]) -> str:
        return "".join(e.text.text for e in events if e.WhichOneof("event") == "text")
    assert text_of(list(recorded.events)) == text_of(demo_run.events)
    assert recorded.usage == demo_run.usage


def test_list_tools_advertises_schemas_per_mode(client: Client) -> None:
    names = {t.name for t in client.tools()}
    assert {"code", "text_search", "image_search", "web_visit"} <= names
    plan_tools = {t.name for t in client.tools("plan")}
    assert "code" not in plan_tools and "web_visit" in plan_tools
    schema = json.loads(next(t for t in client.tools() if t.name == "text_search").parameters_json_schema)
    assert schema["required"] == ["queries"] and schema["properties"]["queries"]["type"] == "array"


def test_plan_mode_returns_a_validated_plan(client: Client) -> None:
    result = client.ask(DEMO_QUESTION, images=[DEMO_IMAGE], mode="plan")
    assert result.status == "STATUS_COMPLETED"
    plan = json.loads(result.answer)
    assert 2 <= len(plan) <= 10 and plan[-1]["tool_name"] == "none"
    assert result.tool_calls == []


def test_asking_again_gives_the_same_answer_from_the_shared_cache(demo_run, client: Client) -> None:  # type: ignore[no-untyped-def]
    again = client.ask(DEMO_QUESTION, images=[DEMO_IMAGE])
    assert again.answer.split(" (source: ")[0] == demo_run.answer.split(" (source: ")[0]
    assert [c.name for c in again.tool_calls] == [c.name for c in demo_run.tool_calls]
    counters = again.usage.counters
    assert counters["cache_hit_hot"] > 0  # search and fetch results came from the hot tier
    assert counters["cache_hit_hot"] > demo_run.usage.counters.get("cache_hit_hot", 0)
