"""Plan-and-execute through the real gateway: R1V4's planner route with `execute_plan` on the baseline policy
(a real Triton server, real workers): the plan streams first, its steps run as tool calls in order with the
placeholders filled from earlier results, the answer comes last — recorded, traced, exported like any turn."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.http_support import exported_rounds, same_rounds, streamed, user
from tests.support.otlp_receiver import OtlpReceiver
from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
PLANNER = "skywork/r1v4-vl-planner-lite"


def test_the_planners_plan_runs_step_by_step_and_reads_as_r1v4_rounds(stack: EmbeddedStack, tmp_path: Path,
                                                                       otlp_receiver: OtlpReceiver) -> None:
    since = time.time() - 1
    full, trajectory_id = streamed(stack.http_url, PLANNER, user(DEMO_QUESTION, DEMO_IMAGE.read_bytes()),
                                   toolfabric={"execute_plan": True})
    plan = json.loads(full.split("<plan>")[1].split("</plan>")[0])
    assert [s["tool_name"] for s in plan] == ["image_search", "text_search", "web_visit", "none"]
    assert full.index("</plan>") < full.index("<tool_call>") and full.rstrip().endswith("</answer>")

    record = exported_rounds(stack, tmp_path, since, trajectory_id)
    parsed = same_rounds(full, record)
    calls = [r["tool_call"] for r in parsed["rounds"]]
    assert [c["name"] for c in calls] == ["image_search", "text_search", "web_visit"]
    assert calls[0]["arguments"] == {"image_paths": ["<image 1>"]}  # the plan's own first step, run as written
    # The later steps' placeholders ("[Subject from Step 1]", "[Best URL from Step 2]") came back filled.
    query, url = calls[1]["arguments"]["queries"][0], calls[2]["arguments"]["urls"][0]
    assert "[" not in query and "Eileen Collins" in query and url.startswith("http")
    assert parsed["rounds"][0]["think"] == "Plan the search."  # the planner's thinking leads the first round
    assert "Eileen Collins" in parsed["final_round"]["answer"] and record["final"]["plan"] == json.dumps(plan)

    with Client(stack.target) as client:
        recorded = client.trajectory(trajectory_id)
    assert recorded.status == pb.STATUS_COMPLETED and recorded.mode == pb.MODE_PLAN
    (answer,) = [e.answer for e in recorded.events if e.WhichOneof("event") == "answer"]
    assert answer.text == recorded.answer and json.loads(answer.plan_json) == plan
    assert "<plan>" in next(e.text.text for e in recorded.events if e.step == 1 and e.WhichOneof("event") == "text"
                            and "<plan>" in e.text.text)

    def plan_steps(spans: list) -> list:  # type: ignore[type-arg]
        return [s for s in spans if s.trace_id == recorded.trace_id and "toolfabric.plan.step" in s.attributes]

    spans = plan_steps(otlp_receiver.wait_for(lambda spans: len(plan_steps(spans)) == 3, 30))
    assert sorted((s.attributes["toolfabric.plan.step"], s.attributes["toolfabric.plan.tool"]) for s in spans) == [
        (1, "image_search"), (2, "text_search"), (3, "web_visit")]


def test_execute_plan_outside_plan_mode_is_refused_naming_the_mode(stack: EmbeddedStack) -> None:
    response = requests.post(f"{stack.http_url}/v1/chat/completions", timeout=60, json={
        "model": "skywork/r1v4-lite", "messages": [user("Who?")], "toolfabric": {"execute_plan": True}})
    assert response.status_code == 400
    assert "execute_plan" in response.json()["error"]["message"] and "deep_research" in response.json()["error"][
        "message"]


def test_the_cli_runs_a_plan_with_execute_plan_and_shows_the_answer(stack: EmbeddedStack, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "run", "Who commanded the STS-93 mission?",
                          "--mode", "plan", "--execute-plan", "--target", stack.target, "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    # The plan is shown, its steps run in order (the second with its placeholder filled), and the answer ends it.
    plan, calls = out.stdout.split("→ tool call", 1)
    assert "[Best URL from Step 1]" in plan and "[web_visit]" in plan
    search, visit = calls.split("→ tool call", 1)
    assert search.split()[1] == "text_search" and visit.split()[1] == "web_visit"
    assert "\"urls\": [\"http" in visit.split("← observation")[0] and "[Best URL" not in visit.split("← observation")[0]
    assert "answer" in visit.split("← observation")[-1]
