"""Plan-and-execute in the agent loop (in-process fakes): the plan's steps run as tool calls in order, the model
fills placeholders from earlier results, answers at the verification step, and the planner's output is kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis

from tests.fakes.agents import RecordingTools, ScriptedModel
from tests.support.r1v4_reader import read_rounds
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.tools import ToolResult
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.plans import call_of, placeholders
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.export.conversation import rebuild
from toolfabric_server.export.formats import rounds_record
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.http.rounds import RoundWriter
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.dialects import dialect_named
from toolfabric_server.model.settings import ModelSettings

PLAN = [{"description": "Search the mission", "tool_name": "text_search", "parameters": {"query": "STS-93 commander"}},
        {"description": "Read the best page", "tool_name": "web_visit",
         "parameters": {"url": "[Best URL from Step 1]"}},
        {"description": "Check the answer", "tool_name": "none", "parameters": {}}]
PLANNER = f"<think>search, then read</think><plan>{json.dumps(PLAN)}</plan>"
FILL = ('<think>step 1 found nasa.gov</think><tool_call>{"name": "web_visit", "arguments": '
        '{"urls": ["https://nasa.gov/sts-93"]}}</tool_call>')
ANSWER = "<think>the page says so</think><answer>Eileen Collins</answer>"


@pytest.fixture
async def blobs(redis_server: RedisServer) -> AsyncIterator[AsyncBlobStore]:
    client = aredis.Redis.from_url(redis_server.url)
    yield AsyncBlobStore(client, 600)
    await client.aclose()


async def found(invocation: Any) -> ToolResult:
    return ToolResult(text=json.dumps([{"query": "STS-93 commander", "results": [
        {"title": "STS-93", "url": "https://nasa.gov/sts-93", "snippet": "Eileen Collins commanded"}]}]))


class Planned:
    def __init__(self, blobs: AsyncBlobStore, steps: list[str], **spec: Any) -> None:
        self.model, self.tools = ScriptedModel(steps), RecordingTools(handlers={"text_search": found})
        self.loop = AgentLoop(self.model, self.tools, blobs, catalog(), lambda _: dialect_named("qwen3vl"),
                              GatewaySettings(), channels=ChannelTracker)
        fields: dict[str, Any] = {"trajectory_id": "t1", "question": "Who commanded STS-93?", "mode": "plan",
                                  "model": "m", "max_steps": 8, "max_tool_calls": 16, "deadline_s": 30.0,
                                  "sampling": {}, "execute_plan": True}
        self.spec = RunSpec(**(fields | spec))
        self.events: list[pb.RunEvent] = []

    async def __call__(self) -> tuple[pb.Status, str]:
        async def emit(event: pb.RunEvent) -> None:
            self.events.append(event)

        return await self.loop.run(self.spec, emit)

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]


def test_a_plan_step_is_the_call_it_stands_for_in_the_tools_own_arguments() -> None:
    assert call_of(PLAN[0]).arguments == {"queries": ["STS-93 commander"]}
    assert call_of({"tool_name": "image_search", "parameters": {"image_path": "<image 1>"}}).arguments == {
        "image_paths": ["<image 1>"]}
    assert call_of(PLAN[1]).arguments == {"urls": ["[Best URL from Step 1]"], "goal": "Read the best page"}
    assert placeholders(PLAN[1]) == ["[Best URL from Step 1]"] and placeholders(PLAN[0]) == []
    assert placeholders({"parameters": {"query": "[Person from step 2] age"}}) == ["[Person from step 2]"]


async def test_the_plan_runs_in_order_the_model_fills_placeholders_and_answers(blobs: AsyncBlobStore) -> None:
    run = Planned(blobs, [PLANNER, FILL, ANSWER])
    assert await run() == (pb.STATUS_COMPLETED, "the model answered")
    calls = run.of("tool_call")
    assert [(c.name, json.loads(c.arguments_json)) for c in calls] == [
        ("text_search", {"queries": ["STS-93 commander"]}), ("web_visit", {"urls": ["https://nasa.gov/sts-93"]})]
    # Step 1 of the plan ran without a model step; the model was asked for step 2 with step 1's result in view.
    assert [e.step for e in run.events if e.WhichOneof("event") == "tool_call"] == [2, 3]
    assert len(run.model.requests) == 3
    fill_prompt, answer_prompt = run.model.requests[1].prompt, run.model.requests[2].prompt
    assert "Plan step 2 of 3" in fill_prompt and "[Best URL from Step 1]" in fill_prompt
    assert "Eileen Collins commanded" in fill_prompt
    assert "Plan step 3 of 3 (verification)" in answer_prompt and "web_visit" in answer_prompt
    (answer,) = run.of("answer")
    assert answer.text == "Eileen Collins" and json.loads(answer.plan_json) == PLAN  # the planner's output is kept
    assert run.of("usage")[0].tool_calls == {"text_search": 1, "web_visit": 1}

    writer = RoundWriter()
    full = "".join(writer.feed(e) for e in run.events)
    assert full.startswith(f"<think>search, then read</think><plan>{json.dumps(PLAN)}</plan><tool_call>")
    parsed = read_rounds(full)
    assert [(r["think"], r["tool_call"]["name"]) for r in parsed["rounds"]] == [
        ("search, then read", "text_search"), ("step 1 found nasa.gov", "web_visit")]
    assert parsed["final_round"] == {"think": "the page says so", "answer": "Eileen Collins"} == writer.final()
    assert json.loads(writer.plan) == PLAN


async def test_a_fill_step_without_the_call_is_an_error_the_model_reads_and_the_plan_goes_on(
        blobs: AsyncBlobStore) -> None:
    run = Planned(blobs, [PLANNER, "<think>no idea</think><answer>too early</answer>", ANSWER])
    assert await run() == (pb.STATUS_COMPLETED, "the model answered")
    errors = [o for o in run.of("observation") if o.is_error]
    assert [(o.name, o.text) for o in errors] == [("model_output", "plan step 2 needs a web_visit call")]
    assert run.of("answer")[0].text == "Eileen Collins"


async def test_without_execute_plan_the_plan_is_the_answer(blobs: AsyncBlobStore) -> None:
    run = Planned(blobs, [PLANNER], execute_plan=False)
    assert await run() == (pb.STATUS_COMPLETED, "the model returned a plan")
    (answer,) = run.of("answer")
    assert json.loads(answer.text) == PLAN == json.loads(answer.plan_json) and not run.of("tool_call")


async def test_the_step_budget_ends_a_plan_midway_saying_where(blobs: AsyncBlobStore) -> None:
    run = Planned(blobs, [PLANNER, FILL, ANSWER], max_steps=2)
    assert await run() == (pb.STATUS_BUDGET_EXHAUSTED, "max_steps=2 reached running plan step 2 of 3")
    assert [c.name for c in run.of("tool_call")] == ["text_search"]


async def test_the_export_rebuilds_the_prompts_the_model_saw_while_running_the_plan(blobs: AsyncBlobStore) -> None:
    run = Planned(blobs, [PLANNER, FILL, ANSWER])
    await run()
    trajectory = pb.Trajectory(trajectory_id="t1", question=run.spec.question, mode=pb.MODE_PLAN, model="m",
                               events=run.events, answer="Eileen Collins")
    conv = rebuild(trajectory, ModelSettings(), catalog())
    assert [s.by_fabric for s in conv.steps] == [False, True, False, False]
    turns = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    assert [conv.dialect.template.render(conv.messages[:i]) for i in turns] == [r.prompt for r in run.model.requests]
    (rounds,) = [rounds_record(conv, {})]
    assert [r["tool_call"]["name"] for r in rounds["rounds"]] == ["text_search", "web_visit"]
    assert json.loads(rounds["final"]["plan"]) == PLAN
