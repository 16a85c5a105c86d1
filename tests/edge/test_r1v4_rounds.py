"""The HTTP API's R1V4 stream, read the way R1V4's parse_utils reads it, gives the trajectory's rounds exactly:
one think per tool call, whatever the model's step structure (the agent loop with in-process fakes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis

from tests.fakes.agents import RecordingTools, ScriptedModel, Step
from tests.support.r1v4_reader import read_rounds
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.http.rounds import RoundWriter
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.dialects import dialect_named


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


@pytest.fixture
async def blobs(redis_server: RedisServer) -> AsyncIterator[AsyncBlobStore]:
    client = aredis.Redis.from_url(redis_server.url)
    yield AsyncBlobStore(client, 600)
    await client.aclose()


async def run(blobs: AsyncBlobStore, steps: list[Step | str], **spec: Any) -> list[pb.RunEvent]:
    events: list[pb.RunEvent] = []

    async def emit(event: pb.RunEvent) -> None:
        events.append(event)

    loop = AgentLoop(ScriptedModel(steps), RecordingTools(), blobs, catalog(), lambda _: dialect_named("qwen3vl"),
                     GatewaySettings(), channels=ChannelTracker)
    fields: dict[str, Any] = {"trajectory_id": "t1", "question": "Who?", "mode": "deep_research", "model": "m",
                              "max_steps": 8, "max_tool_calls": 16, "deadline_s": 30.0, "sampling": {}}
    await loop.run(RunSpec(**(fields | spec)), emit)
    return events


def stream(events: list[pb.RunEvent]) -> tuple[str, RoundWriter]:
    writer = RoundWriter()
    return "".join(writer.feed(e) for e in events), writer


def merged(events: list[pb.RunEvent]) -> list[pb.RunEvent]:
    """The events as the recorder stores them: text deltas merged per step and channel."""
    out: list[pb.RunEvent] = []
    for event in events:
        last = out[-1] if out else None
        if (last is not None and event.HasField("text") and last.HasField("text") and last.step == event.step
                and last.text.channel == event.text.channel):
            last.text.text += event.text.text
        else:
            out.append(pb.RunEvent().__class__.FromString(event.SerializeToString()))
    return out


MIXED = [
    # Three calls under one think, split across chunks mid-tag.
    Step(["<think>search three ways</th", "ink>", call("text_search", queries=["a"]), "\n<tool_",
          "call>" + call("text_search", queries=["b"])[len("<tool_call>"):], call("web_visit", urls=["https://x.org"])]),
    # Two think blocks around a call, and text outside any tag.
    Step(["<think>first</think>let me look", call("text_search", queries=["c"]), "<think>second</think>"]),
    # A call without thinking, in the tag syntax.
    "<text_search>d</text_search>",
    # A step the fabric cannot read, then one with a broken call beside a good one.
    "<think>hmm</think>no idea what to do",
    '<think>retry</think><tool_call>{"name": </tool_call>' + call("text_search", queries=["e"]),
    Step(["<think>now I ", "know</think><answer>Eileen ", "Collins</answer>"]),
]


async def test_every_step_structure_reads_as_one_think_per_round(blobs: AsyncBlobStore) -> None:
    events = await run(blobs, MIXED)
    full, writer = stream(events)
    parsed = read_rounds(full)
    assert [r.record(n) for n, r in enumerate(writer.rounds, start=1)] == parsed["rounds"]
    assert full.count("<think>") == len(parsed["rounds"]) + 1  # one per round, and the final one
    assert [(r["think"], r["tool_call"]["name"]) for r in parsed["rounds"]] == [
        ("search three ways", "text_search"), ("", "text_search"), ("", "web_visit"),
        ("first\n\nsecond", "text_search"),
        ("", "text_search"),
        ("hmm", "model_output"),
        ("retry", "model_output"), ("", "text_search"),
    ]
    assert parsed["rounds"][4]["tool_call"] == {"name": "text_search", "arguments": {"queries": ["d"]}}
    assert parsed["rounds"][1]["observation"] == {"result": "text_search ok", "images": [], "tool": "text_search"}
    assert parsed["rounds"][5]["observation"]["error"] == "model_output"
    assert "not valid JSON" in parsed["rounds"][6]["observation"]["message"]
    assert parsed["final_round"] == {"think": "now I know", "answer": "Eileen Collins"} == writer.final()
    # What the export reads back from the record (text merged per channel) is the same, round by round.
    _, recorded = stream(merged(events))
    assert [r.record(n) for n, r in enumerate(recorded.rounds, start=1)] == parsed["rounds"]
    assert recorded.final() == writer.final()


async def test_a_turn_the_budget_ends_keeps_its_last_thinking_as_the_final_round(blobs: AsyncBlobStore) -> None:
    search = "<think>more</think>" + call("text_search", queries=["a"]) + call("text_search", queries=["b"])
    events = await run(blobs, [search, search, "<think>last</think>" + call("text_search", queries=["c"])],
                       max_tool_calls=2)
    full, writer = stream(events)
    parsed = read_rounds(full)
    assert [r["tool_call"]["arguments"]["queries"] for r in parsed["rounds"]] == [["a"], ["b"], ["a"], ["b"]]
    assert [r["observation"].get("error") for r in parsed["rounds"]] == [None, None, *["budget_exhausted"] * 2]
    assert parsed["final_round"] == {"think": "last", "answer": ""} == writer.final()
    assert full.endswith("<think>last</think>")


async def test_a_plan_is_the_planners_reply(blobs: AsyncBlobStore) -> None:
    plan = [{"description": "find", "tool_name": "text_search", "parameters": {"query": "q"}},
            {"description": "check", "tool_name": "none", "parameters": {}}]
    events = await run(blobs, [f"<think>plan it</think><plan>{json.dumps(plan)}</plan>"], mode="plan")
    full, writer = stream(events)
    assert full.startswith("<think>plan it</think><plan>") and json.loads(writer.plan) == plan
    assert read_rounds(full) == {"rounds": [], "final_round": {"think": "plan it", "answer": ""}}
