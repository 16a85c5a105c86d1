"""The Step service in every dialect, beside Run: one step, so one behaviour (issue 23's drift list).

The Step service runs for real on a real Redis (its state, batch and record); the model and the tools are the
in-process fakes (tests/fakes/agents.py). Each case takes the same text once as a trainer's action (Step) and
once as the model's step in a Run, and compares what the model reads next and what is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis

from tests.conftest import RedisServer
from tests.fakes.agents import RecordingTools, ScriptedModel
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.engine.step import MODEL_OUTPUT, plan_outside_plan_mode
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.stepping import StepItem, StepService
from toolfabric_server.gateway.stepping.settings import StepSettings
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.dialects.registry import DIALECTS, dialect_named
from toolfabric_server.model.settings import ModelSettings

BROKEN = '<think>x</think><tool_call>{"name": "text_search", "arguments": </tool_call>'
SEARCH = '<think>x</think><tool_call>{"name": "text_search", "arguments": {"queries": ["who"]}}</tool_call>'
PLAN = ('<think>x</think><plan>[{"description": "find", "tool_name": "text_search", "parameters": {"query": "q"}}, '
        '{"description": "check", "tool_name": "none", "parameters": {}}]</plan>')
ANSWER = "<think>x</think><answer>Eileen Collins</answer>"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    redis = aredis.Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


def engine(model: ScriptedModel, blobs: AsyncBlobStore) -> AgentLoop:
    # Model names are dialect names here: the trajectory's model picks its dialect.
    return AgentLoop(model, RecordingTools(), blobs, catalog(), dialect_named, GatewaySettings(),
                     channels=ChannelTracker)


async def step_once(client: aredis.Redis, dialect: str, action: str, tid: str) -> tuple[Any, list[pb.Observation]]:
    blobs = AsyncBlobStore(client, 600)
    gw = GatewaySettings()
    service = StepService(engine(ScriptedModel([]), blobs),
                          RequestValidator(gw, ModelSettings(), CommonSettings(), blobs, _no_download, catalog()),
                          client, blobs, StepSettings(), gw, dialect)
    [outcome] = await service.step([StepItem(trajectory_id=tid, action=action, model=dialect)])
    record = await recorder.load(client, tid)
    assert record is not None
    return outcome, [e.observation for e in record.events if e.HasField("observation")]


async def run_once(client: aredis.Redis, dialect: str, text: str) -> tuple[ScriptedModel, list[pb.RunEvent]]:
    model, events = ScriptedModel([text, ANSWER]), []

    async def emit(event: pb.RunEvent) -> None:
        events.append(event)

    spec = RunSpec(trajectory_id="r", question="Who?", mode="deep_research", model=dialect, max_steps=4,
                   max_tool_calls=8, deadline_s=30.0, sampling={})
    await engine(model, AsyncBlobStore(client, 600)).run(spec, emit)
    return model, events


async def _no_download(url: str, max_bytes: int) -> bytes:
    raise AssertionError("no downloads here")


def _same(a: pb.Observation, b: pb.Observation) -> bool:
    return (a.name, a.text, a.is_error, a.error_kind, a.kind) == (b.name, b.text, b.is_error, b.error_kind, b.kind)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_model_output_problem_reads_the_same_in_step_and_run(client: aredis.Redis, dialect: str) -> None:
    outcome, [stepped] = await step_once(client, dialect, BROKEN, f"broken-{dialect}")
    opening, closing = dialect_named(dialect).observation_tags  # DeepEyes: <tool_response>
    assert not outcome.valid and outcome.text.startswith(f"{opening}\ntool: model_output (call -)\n")
    assert outcome.text.rstrip().endswith(closing)
    assert (stepped.error_kind, stepped.kind) == (MODEL_OUTPUT, pb.ERROR_KIND_MODEL_OUTPUT)
    model, events = await run_once(client, dialect, BROKEN)
    [ran] = [e.observation for e in events if e.HasField("observation")]
    assert _same(stepped, ran)
    assert outcome.text in model.requests[1].prompt  # the Run's model read exactly what the trainer gets


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_tool_call_observation_reads_the_same_in_step_and_run(client: aredis.Redis, dialect: str) -> None:
    outcome, [stepped] = await step_once(client, dialect, SEARCH, f"search-{dialect}")
    opening, _ = dialect_named(dialect).observation_tags
    assert outcome.valid and not outcome.done
    assert outcome.text == f"{opening}\ntool: text_search (call s1c1)\ntext_search ok\n{opening.replace('<', '</')}\n"
    model, events = await run_once(client, dialect, SEARCH)
    [ran] = [e.observation for e in events if e.HasField("observation")]
    assert _same(stepped, ran) and outcome.text in model.requests[1].prompt


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_plan_outside_plan_mode_is_a_problem_in_step_and_in_run(client: aredis.Redis, dialect: str) -> None:
    """Step's behaviour, now Run's too: before, Run gave the model an empty turn and no reason."""
    outcome, [stepped] = await step_once(client, dialect, PLAN, f"plan-{dialect}")
    assert not outcome.valid and stepped.kind == pb.ERROR_KIND_MODEL_OUTPUT
    if dialect_named(dialect).parse(PLAN).plan is not None:
        assert stepped.text == plan_outside_plan_mode("deep_research")
    model, events = await run_once(client, dialect, PLAN)
    [ran] = [e.observation for e in events if e.HasField("observation")]
    assert _same(stepped, ran) and outcome.text in model.requests[1].prompt
    assert [e.finished.status for e in events if e.HasField("finished")] == [pb.STATUS_COMPLETED]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_an_answer_ends_a_stepped_trajectory_as_it_ends_a_run(client: aredis.Redis, dialect: str) -> None:
    outcome, observations = await step_once(client, dialect, ANSWER, f"answer-{dialect}")
    assert outcome.done and outcome.valid and observations == []
    record = await recorder.load(client, f"answer-{dialect}")
    assert record is not None and record.status == pb.STATUS_COMPLETED
    assert [e.answer.text for e in record.events if e.HasField("answer")] == ["Eileen Collins"]
