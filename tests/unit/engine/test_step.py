"""The engine's step with fake ports (an in-memory model, tools and image store): milliseconds, no servers.

The step is one copy for every driver; these tests take it both ways — the model writes the action (Run) and the
action comes from outside (Step) — in every dialect, and check what the model reads next."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tests.fakes.agents import RecordingTools, ScriptedModel
from tests.fakes.agents import Step as ScriptedStep
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import builtin_specs
from toolfabric_server.common.tools import Catalog
from toolfabric_server.engine.events import EventSink
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.step import MODEL_OUTPUT, plan_outside_plan_mode
from toolfabric_server.engine.trajectory import Scope, Trajectory
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.dialects.registry import DIALECTS, dialect_named

BROKEN = '<think>x</think><tool_call>{"name": "text_search", "arguments": </tool_call>'
SEARCH = '<think>x</think><tool_call>{"name": "text_search", "arguments": {"queries": ["who"]}}</tool_call>'
PLAN = ('<think>x</think><plan>[{"description": "find", "tool_name": "text_search", "parameters": {"query": "q"}}, '
        '{"description": "check", "tool_name": "none", "parameters": {}}]</plan>')

CATALOG = Catalog(builtin_specs())  # the built-in tools; no plugin or MCP discovery


@dataclass
class MemoryBlobs:
    """The image-store port, in memory."""

    data: dict[str, bytes] = field(default_factory=dict)

    async def get(self, ref: str) -> bytes:
        return self.data[ref]


@dataclass
class Driven:
    """One trajectory of the engine with fake ports; `events` is everything its steps emitted."""

    dialect: str
    mode: str = "deep_research"
    model: ScriptedModel = field(default_factory=lambda: ScriptedModel([]))
    tools: RecordingTools = field(default_factory=RecordingTools)
    max_tool_calls: int = 16
    events: list[pb.RunEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = AgentLoop(self.model, self.tools, MemoryBlobs(), CATALOG, dialect_named, GatewaySettings(),
                                channels=ChannelTracker)
        self.trajectory: Trajectory = self.engine.trajectory(
            Scope("t1", "Who?", self.mode, self.dialect, max_tool_calls=self.max_tool_calls))

        async def emit(event: pb.RunEvent) -> None:
            self.events.append(event)

        self.sink = EventSink("t1", emit)
        self.sink.step = 1

    async def action(self, text: str) -> list[str]:
        """The step with `text` as the action from outside; the text parts of the observation it returns."""
        parsed = await self.engine.step.from_action(self.trajectory, self.sink, text)
        return [p for p in await self.engine.step.observe(self.trajectory, self.sink, parsed) if isinstance(p, str)]

    async def from_model(self, text: str) -> list[str]:
        """The same step with the model writing `text`."""
        self.model._steps.append(ScriptedStep([text]))
        parsed = await self.engine.step.from_model(self.trajectory, self.sink, {})
        return [p for p in await self.engine.step.observe(self.trajectory, self.sink, parsed) if isinstance(p, str)]

    def of(self, kind: str) -> list[pb.Observation]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_model_output_problem_is_an_error_observation_in_the_dialects_own_tags(dialect: str) -> None:
    run = Driven(dialect)
    parts = await run.action(BROKEN)
    [obs] = run.of("observation")
    assert (obs.name, obs.error_kind, obs.kind, obs.is_error) == (MODEL_OUTPUT, MODEL_OUTPUT,
                                                                  pb.ERROR_KIND_MODEL_OUTPUT, True)
    opening, closing = dialect_named(dialect).observation_tags
    text = "".join(parts)
    assert text.startswith(f"{opening}\ntool: model_output (call -)\nerror (model_output): ")
    assert text.rstrip().endswith(closing) and obs.text in text
    assert run.tools.invocations == []


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_call_runs_through_the_tool_port_and_comes_back_in_the_dialects_tags(dialect: str) -> None:
    run = Driven(dialect)
    text = "".join(await run.action(SEARCH))
    [invocation] = run.tools.invocations
    assert (invocation.tool, invocation.arguments["queries"], invocation.context.call_id) == \
        ("text_search", ["who"], "s1c1")
    [call], [obs] = run.of("tool_call"), run.of("observation")
    assert call.call_id == obs.call_id == "s1c1" and not obs.is_error and obs.text == "text_search ok"
    opening, closing = dialect_named(dialect).observation_tags
    assert text == f"{opening}\ntool: text_search (call s1c1)\ntext_search ok\n{closing}\n"
    assert run.trajectory.tool_calls == 1 and run.trajectory.usage.tool_calls == {"text_search": 1}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_the_model_and_an_outside_action_take_the_same_step(dialect: str) -> None:
    outside, model = Driven(dialect), Driven(dialect)
    for text in (BROKEN, SEARCH, PLAN):
        assert await outside.action(text) == await model.from_model(text)

    def seen(run: Driven) -> list[pb.RunEvent]:
        out = []
        for event in run.events:
            if event.WhichOneof("event") in {"text", "tool_call", "observation"}:
                event.ClearField("time")
                event.observation.duration_s = 0.0
                out.append(event)
        return out

    assert seen(outside) == seen(model)
    assert [m.role for m in outside.trajectory.messages] == ["assistant"] * 3


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_plan_outside_plan_mode_is_a_problem_the_model_is_told(dialect: str) -> None:
    run = Driven(dialect)
    await run.action(PLAN)
    [obs] = run.of("observation")
    assert obs.kind == pb.ERROR_KIND_MODEL_OUTPUT
    if dialect_named(dialect).parse(PLAN).plan is not None:  # a dialect that reads plans: it says why not here
        assert obs.text == plan_outside_plan_mode("deep_research")


async def test_in_plan_mode_a_plan_is_the_answer_not_a_problem() -> None:
    run = Driven("qwen3vl", mode="plan")
    parsed = await run.engine.step.from_action(run.trajectory, run.sink, PLAN)
    assert parsed.plan == json.loads(PLAN.split("<plan>")[1].split("</plan>")[0]) and not parsed.problems


async def test_calls_past_the_scopes_budget_are_refused_before_they_run() -> None:
    run = Driven("qwen3vl", max_tool_calls=1)
    await run.action(SEARCH + SEARCH)
    assert len(run.tools.invocations) == 1
    assert [o.error_kind for o in run.of("observation")] == ["", "budget_exhausted"]
    assert run.trajectory.tools_exhausted
