"""`toolfabric eval` through the real stack: the demo benchmark (22 questions, 6 categories) answered by
the baseline policy, graded by a scripted judge served by the real Triton; resume, judge failures,
the HTML report, compare, and a replayed eval on a second stack that only has the recorded cache."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.test_models import loaded
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.evals.results import load_results

pytestmark = pytest.mark.integration
DATASET = Path(__file__).resolve().parents[2] / "bench" / "data" / "eval_demo" / "demo.jsonl"
# Checked by hand against the baseline's answers: the reference appears in the answer it gave.
EXPECTED_CORRECT = {
    "people-1", "people-2", "people-3", "people-4", "people-5",
    "missions-1", "missions-4", "missions-5", "missions-6",
    "science-2", "science-3", "shuttle-2", "objects-2", "objects-3",
}
# Wrong, and why: the baseline reads the astronaut's pages, not the crew lists (missions-2/3); the STS-93 page,
# not Chandra's (science-1); no page states the orbiter count (shuttle-1) or the rocket's pad (shuttle-3);
# it names the cat "Chelsea" without saying cat (objects-1); the corpus knows nothing of the last two photos.


def eval_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "eval", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_args(stack: EmbeddedStack, runs: Path, name: str, *extra: str) -> list[str]:
    return ["run", str(DATASET), "--target", stack.target, "--runs-dir", str(runs), "--name", name,
            "--concurrency", "8", "--max-tokens", "8192", "--label", "suite=demo-bench", "--no-progress",
            "--judge", "triton", "--judge-model", "toolfabric_judge", "--judge-url", stack.triton.grpc_url, *extra]


def results(run_dir: Path) -> dict[str, dict[str, Any]]:
    return load_results(run_dir)


@pytest.fixture(scope="module")
def judge(stack: EmbeddedStack) -> Iterator[str]:
    with loaded(stack.triton.grpc_url, "toolfabric_judge") as name:
        yield name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-runs")


@pytest.fixture(scope="module")
def live(stack: EmbeddedStack, judge: str, runs: Path) -> Path:
    out = eval_cli(*run_args(stack, runs, "live"))
    assert out.returncode == 0, out.stderr
    assert "accuracy (judge): 63.6% ± 20.1%" in out.stdout
    return runs / "live"


def test_demo_benchmark_scores_match_the_hand_checked_answers(live: Path) -> None:
    found = results(live)
    assert len(found) == 22
    assert {i for i, r in found.items() if r["correct"]} == EXPECTED_CORRECT
    assert all(r["judge"]["verdict"] == ("yes" if i in EXPECTED_CORRECT else "no") for i, r in found.items())
    summary = json.loads((live / "summary.json").read_text())
    assert (summary["n"], summary["correct"], summary["metric"]) == (22, 14, "judge")
    assert summary["ci95"] == pytest.approx(1.96 * math.sqrt(14 / 22 * 8 / 22 / 22))
    per = {name: (c["n"], round(c["accuracy"], 3)) for name, c in summary["per_category"].items()}
    assert per == {"missions": (6, 0.667), "objects": (3, 0.667), "people": (5, 1.0), "science": (3, 0.667),
                   "shuttle": (3, 0.333), "unanswerable": (2, 0.0)}
    assert summary["failures"] == {} and summary["judge"] == {"judged": 22, "unparseable": 0, "errors": 0,
                                                              "cached": 0}
    # Deep research on a photo runs the whole plan; a text question skips the image steps.
    assert found["people-1"]["tool_calls"] == 10 and found["missions-1"]["tool_calls"] == 5
    assert set(summary["tool_use"]["per_tool"]) == {"code", "image_search", "text_search", "web_visit"}
    assert found["objects-3"]["scores"]["f1"] > 0.7 and found["objects-3"]["scores"]["exact"] == 0


def test_every_trajectory_is_labelled_with_its_run_and_item(stack: EmbeddedStack, live: Path) -> None:
    with Client(stack.target, timeout_s=60) as client:
        stored = list(client.iter_trajectories(eval_run="live"))
    assert len(stored) == 22
    by_item = {s.labels["eval_item"]: s for s in stored}
    assert set(by_item) == set(results(live))
    assert all(s.labels["suite"] == "demo-bench" for s in stored)
    assert by_item["people-1"].labels["eval_category"] == "people"
    assert by_item["people-1"].trajectory_id == results(live)["people-1"]["trajectory_id"]


def test_an_interrupted_run_resumes_with_the_items_not_done(stack: EmbeddedStack, live: Path, runs: Path) -> None:
    resumed = runs / "resumed"
    shutil.copytree(live, resumed)
    lines = (live / "results.jsonl").read_text().splitlines()
    (resumed / "results.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])  # killed mid-write
    (resumed / "summary.json").unlink()
    out = eval_cli(*run_args(stack, runs, "resumed"))
    assert out.returncode == 0, out.stderr
    with Client(stack.target, timeout_s=60) as client:
        asked = list(client.iter_trajectories(eval_run="resumed"))
    assert len(asked) == 17  # the five done items were skipped, the half-written one asked again
    assert {i for i, r in results(resumed).items() if r["correct"]} == EXPECTED_CORRECT
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["correct"] == 14 and summary["judge"]["cached"] == 17  # same prompts: graded from the cache


def test_a_judge_reply_without_a_verdict_is_counted_not_scored(stack: EmbeddedStack, judge: str, runs: Path) -> None:
    # One step and no answer: the response is empty, and the scripted judge then gives no verdict.
    out = eval_cli(*run_args(stack, runs, "starved", "--max-steps", "1", "--limit", "3"))
    assert out.returncode == 0, out.stderr
    summary = json.loads((runs / "starved" / "summary.json").read_text())
    assert summary["judge"]["unparseable"] == 3 and summary["correct"] == 0
    assert summary["failures"] == {"budget_exhausted": 3}
    assert "3 unparseable replies" in out.stdout
    assert all(r["judge"]["verdict"] == "unparseable" and r["prediction"] == ""
               for r in results(runs / "starved").values())


def test_report_is_one_self_contained_html_file_linking_items_to_trajectories(stack: EmbeddedStack,
                                                                             live: Path) -> None:
    out = eval_cli("report", str(live), "--target", stack.target)
    assert out.returncode == 0, out.stderr
    page = (live / "report.html").read_text()
    assert "22 trajectories embedded" in out.stdout
    for plot in ("accuracy by category", "tool calls per question", "latency"):
        assert f"<img alt='{plot}' src='data:image/png;base64," in page
    assert not re.search(r"""(src|href)=['"](https?:|//)""", page)  # nothing loaded from elsewhere
    # The trajectories read like the CLI's stream: thinking, each call once, observations as text, images inline.
    people = page[page.index(f"id='t-{results(live)['people-1']['trajectory_id']}'"):]
    people = people[:people.index("</section>")]
    assert "<b>thinking</b>" in people and "unspecified" not in people and "&lt;tool_call&gt;" not in people
    assert people.count("<b>→ ") == results(live)["people-1"]["tool_calls"] == people.count("<b>← ")
    assert "\\n" not in people and "[{&quot;" not in people and "title: " in people
    assert "<figure class='img'><img alt='&lt;image 1&gt;" in people and "src='data:image/" in people
    for record in results(live).values():
        tid = record["trajectory_id"]
        assert f"href='#t-{tid}'" in page and f"id='t-{tid}'" in page
    assert "accuracy (judge): 63.6% ± 20.1%" in page


def test_report_uses_the_runs_recorded_gateway_and_warns_when_it_embeds_nothing(live: Path, tmp_path: Path) -> None:
    from toolfabric_server.devstack.processes import free_port

    out = eval_cli("report", str(live), "--out", str(tmp_path / "report.html"))  # no --target: the run's own
    assert out.returncode == 0, out.stderr
    assert "22 trajectories embedded" in out.stdout and "warning" not in out.stderr
    moved = tmp_path / "moved"
    shutil.copytree(live, moved)
    manifest = json.loads((moved / "run.json").read_text())
    gone = f"127.0.0.1:{free_port()}"
    (moved / "run.json").write_text(json.dumps({**manifest, "target": gone}))
    out = eval_cli("report", str(moved))
    assert out.returncode == 0, out.stderr
    assert "(0 trajectories embedded)" in out.stdout
    assert f"warning: no trajectory embedded: the gateway at {gone} is not reachable" in out.stderr


def test_defaults_fit_the_gateways_token_cap_and_a_resume_must_ask_the_same(stack: EmbeddedStack, runs: Path) -> None:
    plain = ["run", str(DATASET), "--target", stack.target, "--runs-dir", str(runs), "--name", "defaults",
             "--limit", "2", "--no-progress"]
    out = eval_cli(*plain)  # R1V4's 20480 tokens by default; the test stack's gateway allows 8192
    assert out.returncode == 0, out.stderr
    assert ("warning: the gateway allows at most 8192 tokens per step; asking with --max-tokens 8192, not R1V4's "
            "20480") in out.stderr
    found = results(runs / "defaults")
    assert len(found) == 2 and not any(r.get("failure") for r in found.values())
    assert json.loads((runs / "defaults" / "run.json").read_text())["options"]["max_tokens"] == 8192
    same = eval_cli(*plain, "--max-tokens", "8192")  # what the defaults asked: a resume, nothing asked again
    assert same.returncode == 0, same.stderr
    assert "resuming defaults: 2 of 2 done" in same.stderr
    other = eval_cli(*plain, "--max-tokens", "4096", "--temperature", "0.5")
    assert other.returncode == 2
    assert "max_tokens 8192 → 4096" in other.stderr and "temperature 0.2 → 0.5" in other.stderr, other.stderr
    assert len(results(runs / "defaults")) == 2
    too_many = eval_cli("run", str(DATASET), "--target", stack.target, "--runs-dir", str(runs), "--name", "too-many",
                        "--limit", "2", "--no-progress", "--max-tokens", "20480")
    assert too_many.returncode == 2  # chosen by the user and refused: one line, not N refused results
    assert "the gateway refuses the run's options: sampling.max_tokens is 20480" in too_many.stderr
    assert not (runs / "too-many" / "results.jsonl").exists()


def test_compare_gives_the_paired_difference_and_mcnemar(live: Path, runs: Path) -> None:
    starved = runs / "starved"
    if not starved.exists():
        pytest.skip("needs the starved run")
    out = eval_cli("compare", str(live), str(starved), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # How each run used the tools: the baseline's every call is valid and every question reaches <answer>.
    baseline = result["tool_use"][str(live)]
    assert baseline["n"] == 22 and baseline["schema_validity"] == 1.0 and baseline["answered"] == 1.0
    assert baseline["valid_calls_per_step"] == pytest.approx(baseline["calls"] / baseline["steps"])
    assert baseline["judge"] == pytest.approx(14 / 22)
    shared = set(results(starved))
    a_only = len(shared & EXPECTED_CORRECT)
    assert result["n"] == 3 and result["a_only_correct"] == a_only and result["b_only_correct"] == 0
    assert result["difference"] == pytest.approx(-a_only / 3)
    assert result["p_value"] == pytest.approx(min(1.0, 2 * 0.5 ** a_only))
    text = eval_cli("compare", str(live), str(live), str(starved))
    assert "B - A = +0.0%" in text.stdout and "McNemar exact p = 1" in text.stdout
    assert "valid calls/step" in text.stdout and str(starved) in text.stdout


def _content(trajectory: pb.Trajectory) -> list[tuple[Any, ...]]:
    """What the model said and read, without ids, times and cache counters."""
    out: list[tuple[Any, ...]] = []
    for e in trajectory.events:
        kind = e.WhichOneof("event")
        if kind == "text":
            out.append((e.step, e.text.channel, e.text.text))
        elif kind == "tool_call":
            out.append((e.step, e.tool_call.name, e.tool_call.arguments_json))
        elif kind == "observation":
            o = e.observation
            out.append((e.step, o.name, o.text, o.is_error, [i.blob for i in o.images]))
        elif kind == "answer":
            out.append((e.step, e.answer.text))
    return out


def test_a_replayed_eval_reproduces_the_trajectories_and_scores(runs: Path, tmp_path: Path) -> None:
    # Recording: a stack whose local index stays put while it runs (fetched pages are not added to it, so its
    # generation, part of every cached search key, does not move) and whose cache records every provider answer.
    data = str(tmp_path / "data")
    record_env = {"TOOLFABRIC_DATA_DIR": data, "TOOLFABRIC_CACHE_MODE": "record",
                  "TOOLFABRIC_FETCH_INDEX_FETCHED_PAGES": "false"}
    with EmbeddedStack(tmp_path / "record", extra_env=record_env) as recorder, \
            loaded(recorder.triton.grpc_url, "toolfabric_judge"):
        out = eval_cli(*run_args(recorder, runs, "recorded"))
        assert out.returncode == 0, out.stderr
        # The same fetch policy as the recording (its site's address allowed), though nothing serves it now.
        policy = {k: v for k, v in recorder.env().items() if k.startswith(("TOOLFABRIC_FETCH_PRIVATE",
                                                                           "TOOLFABRIC_FETCH_ALLOWED"))}
        with Client(recorder.target, timeout_s=60) as client:
            recorded = {i: _content(client.trajectory(r["trajectory_id"]))
                        for i, r in results(runs / "recorded").items()}
    # Replay: no demo site at all, the recorded data dir in replay mode (a cache miss would be an error
    # observation), the judge's replies from the recorded run's judge cache.
    replay_env = {"TOOLFABRIC_DATA_DIR": data, "TOOLFABRIC_CACHE_MODE": "replay", **policy}
    with EmbeddedStack(tmp_path / "replay", demo_site=False, extra_env=replay_env) as replay:
        out = eval_cli(*run_args(replay, runs, "replayed", "--judge-replay", "--judge-cache",
                                 str(runs / "recorded" / "judge_cache.jsonl")))
        assert out.returncode == 0, out.stderr
        first, again = results(runs / "recorded"), results(runs / "replayed")
        assert {i: (r["correct"], r["scores"], r["prediction"]) for i, r in again.items()} == {
            i: (r["correct"], r["scores"], r["prediction"]) for i, r in first.items()}
        assert {i for i, r in again.items() if r["correct"]} == EXPECTED_CORRECT
        with Client(replay.target, timeout_s=60) as client:
            for item, record in again.items():
                assert _content(client.trajectory(record["trajectory_id"])) == recorded[item], item
    assert json.loads((runs / "replayed" / "summary.json").read_text())["judge"]["cached"] == 22


@pytest.mark.timeout(900)  # three stacks, 50 questions: minutes on a loaded machine
def test_a_frozen_eval_reruns_offline_from_its_bundle_with_the_same_trajectories_and_scores(
        runs: Path, tmp_path: Path) -> None:
    from toolfabric_server.common.bundle import Bundle
    from toolfabric_server.evals.offline import offline_stack

    # Freezing: the index stays put while the run reads pages, so each search has one answer.
    record_env = {"TOOLFABRIC_DATA_DIR": str(tmp_path / "data"), "TOOLFABRIC_FETCH_INDEX_FETCHED_PAGES": "false"}
    with EmbeddedStack(tmp_path / "record", extra_env=record_env) as recorder, \
            loaded(recorder.triton.grpc_url, "toolfabric_judge"):
        out = eval_cli(*run_args(recorder, runs, "frozen", "--freeze"), env=recorder.env())
        assert out.returncode == 0, out.stderr
        with Client(recorder.target, timeout_s=60) as client:
            recorded = {i: _content(client.trajectory(r["trajectory_id"]))
                        for i, r in results(runs / "frozen").items()}
    bundle = Bundle(runs / "frozen" / "bundle")
    frozen = json.loads((runs / "frozen" / "run.json").read_text())["frozen"]
    assert frozen["hash"] == bundle.hash and f"frozen: {bundle.path} ({bundle.hash}" in out.stdout
    kinds = {key.split(":")[0] for key in bundle.entries}
    assert kinds == {"search.web", "search.image", "web_visit"} and len(bundle.judge_replies) == 22
    plain = ["run", str(DATASET), "--runs-dir", str(runs), "--concurrency", "8", "--max-tokens", "8192",
             "--label", "suite=demo-bench", "--no-progress", "--bundle", str(bundle.path)]
    first = results(runs / "frozen")

    def same_scores(name: str) -> None:
        again = results(runs / name)
        assert {i: (r["correct"], r["scores"], r["prediction"], r["tool_calls_by_name"]) for i, r in again.items()} \
            == {i: (r["correct"], r["scores"], r["prediction"], r["tool_calls_by_name"]) for i, r in first.items()
                if i in again}
        assert {i for i, r in again.items() if r["correct"]} == EXPECTED_CORRECT & set(again)
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["judge"]["cached"] == len(again) and summary["failures"] == {}

    # No recording stack, no demo site, no judge: one command starts an offline stack of its own.
    out = eval_cli(*plain, "--name", "rerun", "--limit", "6", timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"bundle: {bundle.path} ({bundle.hash}), offline" in out.stdout
    assert len(results(runs / "rerun")) == 6
    same_scores("rerun")
    report = eval_cli("report", str(runs / "rerun"), "--no-trajectories")
    assert report.returncode == 0, report.stderr
    assert f"answered offline from bundle <code>{bundle.hash}</code>" in (runs / "rerun" / "report.html").read_text()
    # The same, on an offline stack we can read the trajectories back from: identical, event by event.
    with offline_stack(bundle) as target:
        out = eval_cli(*plain, "--name", "rerun-here", "--target", target, timeout=600)
        assert out.returncode == 0, out.stderr
        assert len(results(runs / "rerun-here")) == 22
        same_scores("rerun-here")
        with Client(target, timeout_s=60) as client:
            for item, record in results(runs / "rerun-here").items():
                assert _content(client.trajectory(record["trajectory_id"])) == recorded[item], item
