"""The agent loop on its own: in-process fakes of the model and the tools (tests/fakes/agents.py), no servers.

Budgets, deadline, cancellation, parallel calls, every malformed-output case, tool and model failures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis

from tests.fakes.agents import RecordingTools, ScriptedModel, Step, forever
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import names
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore, ref_for
from toolfabric_server.common.tools import NewImage, ToolResult
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.ports import ToolDispatchError, ToolInvocation
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.dialects import dialect_named

ANSWER = "<think>done</think><answer>Eileen Collins</answer>"


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


SEARCH = call("text_search", queries=["who"])


@pytest.fixture
async def blobs(redis_server: RedisServer) -> AsyncIterator[AsyncBlobStore]:
    client = aredis.Redis.from_url(redis_server.url)
    yield AsyncBlobStore(client, 600)
    await client.aclose()


class Run:
    """One trajectory through a fresh AgentLoop; `events` is everything it emitted."""

    def __init__(self, blobs: AsyncBlobStore, model: ScriptedModel, tools: RecordingTools | None = None,
                 dialect: str = "qwen3vl", **settings: Any) -> None:
        self.model, self.tools = model, tools or RecordingTools()
        self.loop = AgentLoop(self.model, self.tools, blobs, catalog(), lambda _: dialect_named(dialect),
                              GatewaySettings(**settings), channels=ChannelTracker)
        self.events: list[pb.RunEvent] = []

    async def emit(self, event: pb.RunEvent) -> None:
        self.events.append(event)

    async def __call__(self, **spec: Any) -> tuple[pb.Status, str]:
        return await self.loop.run(self.spec(**spec), self.emit)

    @staticmethod
    def spec(**overrides: Any) -> RunSpec:
        fields: dict[str, Any] = {"trajectory_id": "t1", "question": "Who is this?", "mode": "deep_research",
                                  "model": "m", "max_steps": 8, "max_tool_calls": 16, "deadline_s": 30.0,
                                  "sampling": {"temperature": 0.2}}
        return RunSpec(**(fields | overrides))

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    @property
    def finished(self) -> pb.TrajectoryFinished:
        [finished] = self.of("finished")
        return finished


async def test_an_answer_ends_the_trajectory_completed_with_every_event_in_order(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([Step(["<think>lo", "ok</think><ans", "wer>Eileen Collins</answer>"])]))
    status, reason = await run()
    assert (status, reason) == (pb.STATUS_COMPLETED, "the model answered")
    kinds = [e.WhichOneof("event") for e in run.events]
    assert kinds[0] == "started" and kinds[-3:] == ["answer", "usage", "finished"]
    assert [e.seq for e in run.events] == list(range(1, len(run.events) + 1))
    assert run.of("answer")[0].text == "Eileen Collins"
    assert "".join(t.text for t in run.of("text") if t.channel == pb.CHANNEL_THINK) == "look"
    assert run.of("usage")[0].steps == 1 and run.finished.status == pb.STATUS_COMPLETED


async def test_max_steps_ends_a_trajectory_that_never_answers(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([SEARCH] * 10))
    status, reason = await run(max_steps=3)
    assert status == pb.STATUS_BUDGET_EXHAUSTED and reason == "max_steps=3 reached without an answer"
    assert len(run.model.requests) == 3 and len(run.tools.invocations) == 3


async def test_max_tool_calls_refuses_calls_past_the_budget_then_ends(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([SEARCH * 3, SEARCH]))
    status, reason = await run(max_tool_calls=2)
    assert status == pb.STATUS_BUDGET_EXHAUSTED and reason == "max_tool_calls=2 used up"
    assert len(run.tools.invocations) == 2
    kinds = [o.error_kind for o in run.of("observation")]
    assert kinds == ["", "", "budget_exhausted"]
    # The model was told on its second step that the budget is used up.
    assert "tool-call budget of 2 calls is used up" in run.model.requests[1].prompt


async def test_the_deadline_stops_a_tool_call_that_never_returns(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([SEARCH]), RecordingTools({"text_search": forever}))
    status, reason = await run(deadline_s=0.2)
    assert status == pb.STATUS_BUDGET_EXHAUSTED and reason == "deadline of 0.2s reached"
    assert run.tools.cancelled == ["s1c1"] and run.finished.reason == reason


async def test_cancel_during_the_model_stream_stops_the_stream(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([Step(["<think>thinking", " more"], hang=True)]))
    task = asyncio.create_task(run())
    await run.model.streaming.wait()
    task.cancel()
    assert await task == (pb.STATUS_CANCELLED, "cancelled")
    assert run.model.cancelled and run.finished.status == pb.STATUS_CANCELLED
    assert "".join(t.text for t in run.of("text")) == "<think>thinking more"


async def test_cancel_during_a_tool_call_cancels_the_call(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([SEARCH]), RecordingTools({"text_search": forever}))
    task = asyncio.create_task(run())
    await run.tools.started.wait()
    task.cancel()
    assert await task == (pb.STATUS_CANCELLED, "cancelled")
    assert run.tools.cancelled == ["s1c1"] and run.of("usage")


async def test_calls_of_one_step_run_in_parallel_and_report_in_call_order(blobs: AsyncBlobStore) -> None:
    barrier = asyncio.Barrier(3)  # passes only when all three calls are in flight together

    async def meet(invocation: ToolInvocation) -> ToolResult:
        async with asyncio.timeout(5):
            await barrier.wait()
        # Finish in reverse order of the calls.
        await asyncio.sleep(0.01 * (3 - int(invocation.context.call_id[-1])))
        return ToolResult(text=f"result of {invocation.context.call_id}")

    step = call("text_search", queries=["a"]) + call("web_visit", urls=["http://x.test"]) + \
        call("image_search", image_paths=["<image>"])
    run = Run(blobs, ScriptedModel([step, ANSWER]),
              RecordingTools({"text_search": meet, "web_visit": meet, "image_search": meet}))
    assert (await run())[0] == pb.STATUS_COMPLETED
    assert run.tools.peak == 3
    assert [o.text for o in run.of("observation")] == ["result of s1c1", "result of s1c2", "result of s1c3"]
    assert [c.call_id for c in run.of("tool_call")] == ["s1c1", "s1c2", "s1c3"]
    assert run.of("usage")[0].tool_calls == {"text_search": 1, "web_visit": 1, "image_search": 1}


MALFORMED = [
    ("broken JSON", '<tool_call>{"name": "code", "arguments": {</tool_call>', "model_output", "not valid JSON"),
    ("no name", '<tool_call>{"arguments": {}}</tool_call>', "model_output", 'string "name"'),
    ("arguments not an object", '<tool_call>{"name": "code", "arguments": [1]}</tool_call>', "model_output",
     '"arguments" must be a JSON object'),
    ("unclosed call", '<tool_call>{"name": "code"', "model_output", "<tool_call> was opened but never closed"),
    ("unclosed answer", "<answer>half an answ", "model_output", "<answer> was opened but never closed"),
    ("neither call nor answer", "<think>hmm</think>", "model_output", "neither a tool call nor an answer"),
    ("unknown tool", call("teleport", to="mars"), "unknown_tool", "unknown tool 'teleport'"),
    ("tool of another mode", call("text_search", queries=["x"]), "unknown_tool", "not available in general mode"),
    ("missing argument", call("text_search"), "invalid_argument", "queries: Field required"),
    ("mistyped argument", call("zoom_in", bbox="left"), "invalid_argument", "invalid arguments for zoom_in"),
    ("a call and an answer", call("code", code="1") + "<answer>x</answer>", "model_output",
     "both calls tools and answers"),
]


@pytest.mark.parametrize(("case", "text", "kind", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_output_is_an_error_observation_the_model_reads_next(
        blobs: AsyncBlobStore, case: str, text: str, kind: str, message: str) -> None:
    run = Run(blobs, ScriptedModel([text, ANSWER]))
    status, _ = await run(mode="general" if case == "tool of another mode" else "deep_research")
    assert status == pb.STATUS_COMPLETED  # the trajectory went on to the answer
    errors = [o for o in run.of("observation") if o.is_error]
    assert [o.error_kind for o in errors] == [kind] and message in errors[0].text
    assert errors[0].kind == names.error_kind(kind) != pb.ERROR_KIND_UNSPECIFIED
    assert message in run.model.requests[1].prompt and f"error ({kind})" in run.model.requests[1].prompt


async def test_a_failed_tool_call_is_an_observation_and_the_trajectory_goes_on(blobs: AsyncBlobStore) -> None:
    async def down(invocation: ToolInvocation) -> ToolResult:
        raise ToolDispatchError("unavailable", "could not queue text_search on 'search': connection refused")

    async def fails(invocation: ToolInvocation) -> ToolResult:
        return ToolResult.failure("timeout", "web_visit gave up after 20s")

    run = Run(blobs, ScriptedModel([SEARCH + call("web_visit", urls=["http://x.test"]), ANSWER]),
              RecordingTools({"text_search": down, "web_visit": fails}))
    assert (await run())[0] == pb.STATUS_COMPLETED
    observations = run.of("observation")
    assert [(o.is_error, o.error_kind) for o in observations] == [(True, "unavailable"), (True, "timeout")]
    assert "connection refused" in observations[0].text


async def test_a_model_failure_fails_the_trajectory_with_a_fatal_error(blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([SEARCH, Step(["<think>par"], fail="Triton closed the stream")]))
    status, reason = await run()
    assert status == pb.STATUS_FAILED and reason == "Triton closed the stream"
    [error] = run.of("error")
    assert (error.code, error.kind, error.fatal) == ("model_unavailable", pb.ERROR_KIND_MODEL_UNAVAILABLE, True)
    assert run.finished.status == pb.STATUS_FAILED


async def test_tool_images_become_sub_images_the_next_step_sees(blobs: AsyncBlobStore) -> None:
    png = bytes.fromhex("89504e470d0a1a0a") + b"x" * 16
    ref = await blobs.put(png)

    async def crop(invocation: ToolInvocation) -> ToolResult:
        return ToolResult(text="cropped", images=[NewImage(ref=ref, width=10, height=20, origin="crop")])

    run = Run(blobs, ScriptedModel([call("crop", bbox=[0, 0, 10, 20]), ANSWER]), RecordingTools({"crop": crop}))
    assert (await run())[0] == pb.STATUS_COMPLETED
    [observation] = run.of("observation")
    assert [(i.name, i.blob, i.step) for i in observation.images] == [("<sub-image 1>", ref_for(png), 1)]
    assert run.model.requests[1].images == [png] and "<sub-image 1> (10x20, crop)" in run.model.requests[1].prompt


async def test_plan_mode_returns_the_validated_plan(blobs: AsyncBlobStore) -> None:
    plan = [{"description": "find", "tool_name": "text_search", "parameters": {"query": "q"}},
            {"description": "check", "tool_name": "none", "parameters": {}}]
    run = Run(blobs, ScriptedModel([f"<plan>{json.dumps(plan)}</plan>"]))
    assert await run(mode="plan") == (pb.STATUS_COMPLETED, "the model returned a plan")
    assert json.loads(run.of("answer")[0].plan_json) == plan


async def test_the_dialect_shapes_prompt_calls_and_stop_strings(blobs: AsyncBlobStore) -> None:
    zoom = call("image_zoom_in_tool", bbox_2d=[10, 20, 110, 220], label="sign")
    run = Run(blobs, ScriptedModel([zoom, ANSWER]), dialect="deepeyes")
    assert (await run(mode="general"))[0] == pb.STATUS_COMPLETED
    [invocation] = run.tools.invocations
    assert (invocation.tool, invocation.arguments["bbox"], invocation.arguments["coords"]) == \
        ("zoom_in", [10.0, 20.0, 110.0, 220.0], "pixel")
    first, second = run.model.requests
    assert first.sampling["stop"] == ["<tool_response>"] and first.sampling["temperature"] == 0.2
    assert '"name": "image_zoom_in_tool"' in first.prompt and '"name": "zoom_in"' not in first.prompt
    assert "<tool_response>\ntool: zoom_in (call s1c1)\nzoom_in ok\n</tool_response>" in second.prompt


async def test_a_narrower_tool_offer_is_what_the_prompt_declares_and_all_the_model_may_call(
        blobs: AsyncBlobStore) -> None:
    run = Run(blobs, ScriptedModel([call("crop", image="<image 1>", bbox=[0, 0, 10, 10]), SEARCH, ANSWER]))
    assert (await run(tools=("text_search", "web_visit")))[0] == pb.STATUS_COMPLETED
    first = run.model.requests[0].prompt
    assert '"name": "text_search"' in first and '"name": "web_visit"' in first
    assert '"name": "crop"' not in first and '"name": "image_search"' not in first
    refused, searched = run.of("observation")
    assert refused.error_kind == "unknown_tool" and "not offered in this run" in refused.text
    assert [i.tool for i in run.tools.invocations] == ["text_search"] and searched.name == "text_search"
    assert list(run.of("started")[0].tools) == ["text_search", "web_visit"]  # recorded: the export renders it
