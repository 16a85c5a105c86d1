"""The judge's verdict parsing and cache (against a real local server speaking OpenAI's chat format), and
the statistics: Wald intervals and McNemar's exact test on hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from aiohttp import web

from toolfabric_server.evals.errors import JudgeCacheMiss, JudgeError
from toolfabric_server.evals.judge import Judge, OpenAIJudge, judge_prompt, parse_verdict
from toolfabric_server.evals.results import mcnemar, summarize, wald


@pytest.mark.parametrize(("reply", "verdict"), [
    ("extracted_final_answer: x\nreasoning: fine\ncorrect: yes\nconfidence: 90", True),
    ("correct: No", False),
    ("**correct:** yes", True),
    ("correct: no\n...on reflection\ncorrect: yes", True),  # the last verdict counts
    ("The answer looks right to me.", None),
    ("incorrect: yes", None),
])
def test_the_verdict_is_the_last_correct_line(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict


def test_the_prompt_names_every_accepted_answer() -> None:
    prompt = judge_prompt("Who?", "Collins", ["Eileen Collins", "Collins"])
    assert "[correct_answer]: Eileen Collins (also accepted: Collins)" in prompt
    assert "[response]: Collins" in prompt and "correct: Answer 'yes'" in prompt


@pytest.fixture
async def openai_server(unused_tcp_port: int):  # type: ignore[no-untyped-def]
    """A local endpoint with OpenAI's /chat/completions request and response shapes."""
    seen: list[dict] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), **body})
        if body["model"] == "broken":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        prompt = body["messages"][0]["content"]
        verdict = "yes" if "[response]: Collins" in prompt else "maybe"
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": f"correct: {verdict}"}, "finish_reason": "stop"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield f"http://127.0.0.1:{unused_tcp_port}/v1", seen
    await runner.cleanup()


async def test_judge_calls_are_cached_and_replayable(openai_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    cache = tmp_path / "judge_cache.jsonl"
    judge = Judge(OpenAIJudge(url, "grader", "sk-test", 64, 10), cache)
    first = await judge.grade("Who?", "Collins", ["Collins"])
    again = await judge.grade("Who?", "Collins", ["Collins"])
    unsure = await judge.grade("Who?", "Ride", ["Collins"])
    await judge.close()
    assert (first.correct, first.cached, again.correct, again.cached) == (True, False, True, True)
    assert unsure.correct is None and unsure.reply == "correct: maybe"  # unparseable, not guessed
    assert len(seen) == 2 and seen[0]["auth"] == "Bearer sk-test" and seen[0]["temperature"] == 0.0
    replay = Judge(None, cache, replay=True, name="openai:grader")
    assert (await replay.grade("Who?", "Collins", ["Collins"])).correct is True
    with pytest.raises(JudgeCacheMiss, match="not in the cache"):
        await replay.grade("Who?", "Someone else", ["Collins"])
    assert [json.loads(line)["judge"] for line in cache.read_text().splitlines()] == ["openai:grader"] * 2


async def test_an_endpoint_error_is_a_judge_error(openai_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = openai_server
    judge = Judge(OpenAIJudge(url, "broken", "", 64, 10), tmp_path / "c.jsonl")
    with pytest.raises(JudgeError, match="HTTP 404"):
        await judge.grade("q", "a", ["a"])
    await judge.close()


def test_wald_interval() -> None:
    assert wald(14, 22) == pytest.approx((14 / 22, 1.96 * math.sqrt(14 / 22 * 8 / 22 / 22)))
    assert wald(0, 0) == (0.0, 0.0) and wald(5, 5) == (1.0, 0.0)


def test_mcnemar_on_a_hand_computed_table() -> None:
    # 10 paired items: both right 4, only A right 1, only B right 4, both wrong 1.
    pattern = [(1, 1)] * 4 + [(1, 0)] + [(0, 1)] * 4 + [(0, 0)]
    a = {str(i): {"correct": bool(x)} for i, (x, _) in enumerate(pattern)}
    b = {str(i): {"correct": bool(y)} for i, (_, y) in enumerate(pattern)}
    b["extra"] = {"correct": True}
    result = mcnemar(a, b)
    assert (result["n"], result["a_only_correct"], result["b_only_correct"]) == (10, 1, 4)
    assert result["difference"] == pytest.approx(0.3)
    assert result["p_value"] == pytest.approx(2 * (1 + 5) / 32)  # two-sided binomial, 5 discordant pairs
    assert result["only_in_b"] == 1


def test_summary_counts_failures_and_unparseable_verdicts() -> None:
    records = [
        {"id": "1", "category": "x", "correct": True, "tool_calls": 2, "tool_calls_by_name": {"code": 2},
         "seconds": 1.0, "scores": {"exact": 1, "sub_exact": 1, "f1": 1.0}, "judge": {"verdict": "yes"}},
        {"id": "2", "category": "y", "correct": False, "tool_calls": 0, "seconds": 3.0, "failure": "no_answer",
         "scores": {"exact": 0, "sub_exact": 0, "f1": 0.0}, "judge": {"verdict": "unparseable"}},
    ]
    summary = summarize(records, "judge")
    assert summary["accuracy"] == 0.5 and summary["failures"] == {"no_answer": 1}
    assert summary["judge"]["unparseable"] == 1 and summary["tool_use"]["per_tool"] == {"code": 2}
    assert summary["per_category"]["y"] == {"n": 1, "accuracy": 0.0, "ci95": 0.0}
