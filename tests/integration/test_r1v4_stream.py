"""The HTTP API's stream read the way R1V4's parse_utils reads it (a reader written from R1V4's documented
format) gives, round by round, what `toolfabric export --format rounds` exports for the same trajectory — for
the baseline policy, which makes several calls under one think, and for a scripted model's odd steps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http_support import Api, api_gateway, exported_rounds, same_rounds, script, streamed, user
from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(stack, tmp_path_factory.mktemp("r1v4-stream")) as running:
        yield running


def test_the_baseline_policys_parallel_calls_read_as_one_round_each(stack: EmbeddedStack, tmp_path: Path) -> None:
    since = time.time() - 1
    full, trajectory_id = streamed(stack.http_url, "skywork/r1v4-lite", user(DEMO_QUESTION, DEMO_IMAGE.read_bytes()))
    parsed = same_rounds(full, exported_rounds(stack, tmp_path, since, trajectory_id))
    with Client(stack.target) as client:
        recorded = client.trajectory(trajectory_id)
    calls = [e.tool_call for e in recorded.events if e.WhichOneof("event") == "tool_call"]
    steps = {e.step for e in recorded.events if e.WhichOneof("event") == "tool_call"}
    assert len(calls) > len(steps)  # several calls under one think: the case R1V4's reader misread
    assert [r["tool_call"]["name"] for r in parsed["rounds"]] == [c.name for c in calls]
    assert all(r["think"] for r, c in zip(parsed["rounds"], calls, strict=True) if c.call_id.endswith("c1"))
    assert parsed["final_round"]["think"] and "Eileen Collins" in parsed["final_round"]["answer"]


def test_odd_step_structures_read_the_same_as_the_export(api: Api, stack: EmbeddedStack, tmp_path: Path) -> None:
    since = time.time() - 1
    steps = ["<think>two at once</think>" + call("text_search", queries=["Eileen Collins"])
             + call("text_search", queries=["STS-93"]),
             "<think>first</think>and" + call("text_search", queries=["Columbia"]) + "<think>second</think>",
             "<text_search>orbiter</text_search>",
             "<think>hmm</think>no tool and no answer",
             "<think>done</think><answer>STS-93</answer>"]
    full, trajectory_id = streamed(api.url, "test/scripted", user(script(*steps)))
    parsed = same_rounds(full, exported_rounds(stack, tmp_path, since, trajectory_id))
    assert [(r["think"], r["tool_call"]["name"]) for r in parsed["rounds"]] == [
        ("two at once", "text_search"), ("", "text_search"), ("first\n\nsecond", "text_search"),
        ("", "text_search"), ("hmm", "model_output")]
    assert parsed["final_round"] == {"think": "done", "answer": "STS-93"}
