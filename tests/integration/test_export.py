"""`toolfabric export` on trajectories recorded by the real stack: curation filters with their reasons,
the consistency verdicts, and the three formats validated structurally and by re-rendering with the
fabric's chat template (the prompts must be the ones the model was given)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from toolfabric import Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.export.formats import messages_from_sft
from toolfabric_server.model.chat_template import Qwen3VLTemplate

pytestmark = pytest.mark.integration
LABELS = {"suite": "export"}


def scripted(client: Client, *steps: str, **options: Any) -> str:
    result = client.ask(json.dumps({"script": list(steps)}), model="toolfabric_scripted", labels=LABELS, **options)
    return result.trajectory_id


@pytest.fixture(scope="module")
def recorded(stack: EmbeddedStack) -> dict[str, str]:
    with Client(stack.target, timeout_s=180) as client:
        ids = {
            "demo": client.ask(DEMO_QUESTION, images=[DEMO_IMAGE], labels=LABELS).trajectory_id,
            "demo-again": client.ask(DEMO_QUESTION, images=[DEMO_IMAGE], labels=LABELS).trajectory_id,
            "unfinished": scripted(client, '<think>x</think><tool_call>{"name": "text_search", "arguments": '
                                           '{"queries": ["STS-93"]}}</tool_call>', max_steps=1),
            "unknown-tool": scripted(client, '<think>x</think><tool_call>{"name": "teleport", "arguments": {}}'
                                             '</tool_call>', "<answer>no</answer>"),
            "repeated": scripted(client, *['<think>look</think><tool_call>{"name": "text_search", "arguments": '
                                           '{"queries": ["STS-93 orbiter"]}}</tool_call>'] * 2,
                                 "<answer>Columbia</answer>"),
            "ungrounded": scripted(client, "<think>I know this.</think><answer>Atlantis</answer>"),
            "inconsistent": scripted(client, '<think>I will use text_search.</think><tool_call>{"name": "code", '
                                             '"arguments": {"code": "print(\'Columbia\')"}}</tool_call>',
                                     "<think>The code said it.</think><answer>Columbia</answer>"),
        }
        # The store's writer thread is asynchronous: wait until every one is listed as finished.
        for _ in range(300):
            listed = {s.trajectory_id: s.status for s in client.iter_trajectories(labels=LABELS)}
            if set(ids.values()) <= set(listed) and 1 not in listed.values():
                break
            time.sleep(0.1)
    return ids


def export(stack: EmbeddedStack, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "export", str(out), "--target", stack.target,
                           "--label", "suite=export", "--no-progress", *flags], capture_output=True, text=True,
                          timeout=300)


def test_each_filter_drops_what_it_should_and_says_why(stack: EmbeddedStack, recorded: dict[str, str],
                                                      tmp_path: Path) -> None:
    out = export(stack, tmp_path, "--no-error-observations", "--no-repeated-calls", "--valid-calls",
                 "--images-exist", "--grounded", "--max-calls", "12", "--consistent", "--dedupe-question")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "curation.json").read_text())
    assert (report["trajectories"], report["kept"]) == (7, 1)
    dropped = {f["filter"]: f["reasons"] for f in report["filters"]}
    assert dropped == {
        "completed": {"status STATUS_BUDGET_EXHAUSTED": 1},
        "no-error-observations": {"error observation (unknown_tool)": 1},
        "no-repeated-calls": {"repeated call text_search": 1},
        "valid-calls": {}, "images-exist": {},
        "grounded": {"answer not found in any observation": 1},
        "bounds": {},
        "consistent": {"thinking names a tool step 1 does not call": 1},
        "dedupe-question": {"duplicate question": 1},
    }
    kept = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == [recorded["demo"]]  # the first of the two identical questions
    assert "kept 1 of 7 trajectories" in out.stdout
    lines = (tmp_path / "consistency.jsonl").read_text().splitlines()
    verdicts = {r["trajectory_id"]: r for r in map(json.loads, lines)}
    bad = verdicts[recorded["inconsistent"]]
    assert bad["consistent"] is False
    assert bad["steps"][0] == {"step": 1, "verdict": "inconsistent", "named": ["text_search"], "called": ["code"]}
    assert {s["verdict"] for s in verdicts[recorded["demo"]]["steps"]} <= {"unstated", "consistent"}


def test_sft_rounds_and_rl_rerender_to_the_prompts_the_model_saw(stack: EmbeddedStack, recorded: dict[str, str],
                                                                 tmp_path: Path) -> None:
    out = export(stack, tmp_path, "--format", "sft", "--format", "trl", "--format", "rounds", "--format", "rl",
                 "--question", "astronaut", "--dedupe-question")
    assert out.returncode == 0, out.stderr
    (sft,) = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    (trl,) = [json.loads(line) for line in (tmp_path / "trl.jsonl").read_text().splitlines()]
    rl = [json.loads(line) for line in (tmp_path / "rl.jsonl").read_text().splitlines()]
    (rounds,) = json.loads((tmp_path / "rounds.json").read_text())
    with Client(stack.target, timeout_s=60) as client:
        trajectory = client.trajectory(sft["id"])

    # SFT: system with the tool list, the user turn with the photo, assistant/observation turns, the answer last.
    roles = [m["role"] for m in sft["messages"]]
    text = [("".join(p["text"] for p in m["content"] if p["type"] == "text")) for m in sft["messages"]]
    assert roles[:3] == ["system", "user", "assistant"] and roles[-1] == "assistant"
    assert '"name": "image_search"' in text[0]
    assert sft["messages"][1]["content"][0] == {"type": "image", "image": sft["images"][0]}
    assert text[-1].rstrip().endswith("</answer>") and "<tool_call>" in text[2]
    assert all(t.startswith("<observation>") for t in text[3:-1:2])
    shown = [p["image"] for m in sft["messages"] for p in m["content"] if p["type"] == "image"]
    assert shown == sft["images"] and len(shown) > 1 and all((tmp_path / p).is_file() for p in shown)
    assert (tmp_path / sft["images"][0]).read_bytes() == DEMO_IMAGE.read_bytes()

    # TRL: the same turns, images as bare placeholders filled in order from `images`; every part has the same keys.
    assert trl["images"] == sft["images"] and trl["id"] == sft["id"]
    assert [m["role"] for m in trl["messages"]] == roles
    for ours, theirs in zip(sft["messages"], trl["messages"], strict=True):
        assert [p["text"] if p["type"] == "text" else None for p in ours["content"]] == [
            p["text"] for p in theirs["content"]]
    assert all(set(p) == {"type", "text"} for m in trl["messages"] for p in m["content"])

    # RL: one record per model step; each prompt is the chat template's rendering of the conversation so far.
    template = Qwen3VLTemplate()
    messages = messages_from_sft(sft)
    assert len(rl) == trajectory.usage.steps == roles.count("assistant")
    turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
    for record, index in zip(rl, turns, strict=True):
        assert record["prompt"] == template.render(messages[:index])
        assert record["completion"] == messages[index].text()
        assert len(record["images"]) == record["prompt"].count(template.IMAGE)
        for start, end in record["observation_spans"]:
            assert record["prompt"][start:end].startswith("<observation>")
            assert record["prompt"][start:end].endswith("</observation>")
        assert [record["prompt"][s:e] for s, e in record["assistant_spans"]] == [
            m.text() for m in messages[:index] if m.role == "assistant"]
    # The model (a Triton python model) counts its prompt's words as input tokens: the re-rendered prompts are
    # word for word the ones it received.
    assert sum(len(r["prompt"].split()) for r in rl) == trajectory.usage.input_tokens
    assert sum(len(r["observation_spans"]) for r in rl) == sum(range(len(rl)))

    # R1V4 rounds: one tool call each, with its think (the step's, on its first call) and observation; the final
    # think and answer.
    calls = [e.tool_call for e in trajectory.events if e.WhichOneof("event") == "tool_call"]
    assert [r["tool_call"]["name"] for r in rounds["rounds"]] == [c.name for c in calls]
    assert [r["round_num"] for r in rounds["rounds"]] == list(range(1, len(calls) + 1))
    assert [bool(r["think"]) for r in rounds["rounds"]] == [c.call_id.endswith("c1") for c in calls]
    assert rounds["final"]["answer"] == trajectory.answer and rounds["final"]["think"]
    assert rounds["rounds"][0]["tool_call"]["arguments"]["code"]
    assert rounds["images"] == sft["images"][:1]
    crops = [i for r in rounds["rounds"] for i in r["images"]]
    assert crops and all((tmp_path / p).is_file() for p in crops)


def test_correct_only_keeps_what_an_eval_judged_correct(stack: EmbeddedStack, recorded: dict[str, str],
                                                       tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "trajectory_id": recorded["demo"], "correct": True, "answers": ["STS-93"]},
        {"id": "b", "trajectory_id": recorded["repeated"], "correct": False, "answers": ["Columbia"]}]) + "\n")
    out = export(stack, tmp_path / "out", "--correct-only", str(run))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "out" / "curation.json").read_text())
    reasons = {f["filter"]: f["reasons"] for f in report["filters"]}["judge-correct"]
    assert reasons == {"no eval result for this trajectory": 4, "judged incorrect": 1}
    assert report["kept"] == 1


def test_a_bad_label_or_eval_folder_is_a_clear_error(stack: EmbeddedStack, tmp_path: Path) -> None:
    out = export(stack, tmp_path, "--label", "nokey")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr
    out = export(stack, tmp_path, "--correct-only", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "not an eval run folder" in out.stderr


def test_a_run_offered_fewer_tools_is_exported_with_the_prompt_it_had(stack: EmbeddedStack, tmp_path: Path) -> None:
    search = '<think>x</think><tool_call>{"name": "text_search", "arguments": {"queries": ["STS-93"]}}</tool_call>'
    labels = {"suite": "export-tools"}
    with Client(stack.target, timeout_s=180) as client:
        ran = client.ask(json.dumps({"script": [search, "<answer>Columbia</answer>"]}), model="toolfabric_scripted",
                         labels=labels, tools=["text_search", "web_visit"])
        for _ in range(300):  # the store's writer is asynchronous
            if [s.status for s in client.iter_trajectories(labels=labels)] == [pb.STATUS_COMPLETED]:
                break
            time.sleep(0.1)
        trajectory = client.trajectory(ran.trajectory_id)
    out = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "export", str(tmp_path), "--target",
                          stack.target, "--label", "suite=export-tools", "--no-progress", "--format", "rl"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rl = [json.loads(line) for line in (tmp_path / "rl.jsonl").read_text().splitlines()]
    assert len(rl) == 2 and '"name": "text_search"' in rl[0]["prompt"] and '"name": "web_visit"' in rl[0]["prompt"]
    assert '"name": "image_search"' not in rl[0]["prompt"] and '"name": "code"' not in rl[0]["prompt"]
    # Word for word what the model received (the Triton python model counts prompt words as input tokens).
    assert sum(len(r["prompt"].split()) for r in rl) == trajectory.usage.input_tokens
