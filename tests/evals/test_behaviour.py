"""Tool-use figures per trajectory and per run (`eval compare`'s table), from a Run's events."""

from __future__ import annotations

import pytest

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.evals import behaviour


def call(step: int, name: str) -> pb.RunEvent:
    return pb.RunEvent(step=step, tool_call=pb.ToolCall(call_id=f"s{step}", name=name, arguments_json="{}"))


def observation(step: int, name: str, error_kind: str = "", call_id: str = "c") -> pb.RunEvent:
    return pb.RunEvent(step=step, observation=pb.Observation(call_id=call_id, name=name, is_error=bool(error_kind),
                                                             error_kind=error_kind))


def test_refused_calls_are_invalid_and_unparseable_output_is_malformed_but_a_budget_refusal_is_valid() -> None:
    events = [call(1, "teleport"), observation(1, "teleport", "unknown_tool"),
              call(1, "text_search"), observation(1, "text_search", "invalid_argument"),
              observation(2, "model_output", "model_output", call_id=""),
              call(3, "code"), observation(3, "code", "budget_exhausted"),
              call(4, "web_visit"), observation(4, "web_visit", "fetch_failed"),
              pb.RunEvent(step=5, answer=pb.FinalAnswer(text="Columbia"))]
    assert behaviour.of_events(events, steps=5) == {"steps": 5, "calls": 4, "invalid_calls": 2, "malformed": 1,
                                                    "answered": True}


def test_run_figures_count_every_attempt_and_every_question() -> None:
    records = [
        {"behaviour": {"steps": 4, "calls": 3, "invalid_calls": 1, "malformed": 1, "answered": True},
         "scores": {"exact": 1}, "judge": {"verdict": "yes"}, "correct": True},
        {"behaviour": {"steps": 2, "calls": 0, "invalid_calls": 0, "malformed": 2, "answered": False},
         "scores": {"exact": 0}, "judge": {"verdict": "no"}, "correct": False},
        {"failure": "invalid_request", "scores": {"exact": 0}, "correct": False},  # refused: no behaviour
    ]
    s = behaviour.summarize(records)
    assert s["n"] == 3 and s["steps"] == 6 and s["valid_calls"] == 2 and s["attempts"] == 6
    assert s["valid_calls_per_step"] == pytest.approx(2 / 6)
    assert s["schema_validity"] == pytest.approx(2 / 6)
    assert s["answered"] == pytest.approx(1 / 3) and s["exact"] == pytest.approx(1 / 3)
    assert s["judge"] == pytest.approx(1 / 2)  # over the judged items only
    assert s["steps_per_question"] == pytest.approx(2.0)


def test_no_attempt_and_no_judge_show_as_dashes() -> None:
    s = behaviour.summarize([{"behaviour": {"steps": 3}, "scores": {"exact": 0}}])
    assert s["schema_validity"] is None and s["judge"] is None
    lines = behaviour.table({"untrained": s}).splitlines()
    assert lines[0].split()[:3] == ["run", "n", "valid"]
    assert lines[1].split() == ["untrained", "1", "0.00", "0%", "—", "0.0%", "—", "3.00"]
