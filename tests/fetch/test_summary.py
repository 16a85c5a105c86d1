"""Long pages summarised through the model service when a summariser is set, passages otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.model_repository import TEST_MODELS, TEST_REPOSITORY
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.tools.fetch.spec import WebVisitArgs
from toolfabric_server.tools.fetch.summarize import ModelSummarizer
from toolfabric_server.tools.fetch.visit import Services, web_visit

from .conftest import settings_for
from .servers import Server, html

LONG = "".join(f"<h2>Part {i}</h2><p>{'The shuttle program flew many missions. ' * 30}</p>" for i in range(30))


async def _visit(web: Server, summarizer: ModelSummarizer) -> tuple[dict, dict]:
    page = f"<html><head><title>Shuttle</title></head><body><article>{LONG}</article></body></html>"
    web.routes["/long"] = html(page)
    settings = settings_for(web, summarizer_model=summarizer.model)
    result = await web_visit(WebVisitArgs(urls=[web.url("/long")], goal="missions"), ToolContext(),
                             Services(settings, summarizer=summarizer))
    return json.loads(result.text)[0], result.usage


async def test_unreachable_summariser_falls_back_to_passages_and_says_so(web: Server) -> None:
    summarizer = ModelSummarizer("summarizer", f"127.0.0.1:{free_port()}", timeout_s=5)
    entry, usage = await _visit(web, summarizer)
    assert entry["method"] == "passages" and "shuttle program" in entry["content"]
    assert usage["summaries_failed"] == 1


@pytest.mark.integration
async def test_long_page_is_summarised_by_the_model_on_triton(web: Server, tmp_path: Path) -> None:
    from toolfabric_server.devstack.triton_server import TritonServer

    with TritonServer(tmp_path, models=TEST_MODELS, repositories=(TEST_REPOSITORY,)) as triton:
        # The scripted CPU model answers any non-script prompt with a fixed <answer>; what matters
        # here is that the page went through Triton and its reply came back labelled "summary".
        entry, usage = await _visit(web, ModelSummarizer("toolfabric_scripted", triton.grpc_url, timeout_s=60))
    assert entry["method"] == "summary" and entry["truncated"] is True
    assert "scripted model" in entry["content"]
    assert usage["summaries"] == 1


def test_summariser_prompt_carries_the_goal_and_the_relevant_passages() -> None:
    from toolfabric_server.web.extract import Page

    page = Page("http://x/", "Shuttle", "# Intro\n\nBoring.\n\n# Landing\n\nColumbia landed at 06:21.", "html")
    prompt = ModelSummarizer("m", "127.0.0.1:1", 1).prompt(page, "when did Columbia land")
    assert "Goal: when did Columbia land" in prompt and "Columbia landed at 06:21." in prompt
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
