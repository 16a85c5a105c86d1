"""Table tests of the gateway's pure mappings: Celery results → ToolResult, RunRequest → RunSpec or a clear
refusal, and the recorder's merging of text deltas."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolResult
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.celery_executor import _to_result
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.settings import ModelSettings

RESULTS = [
    ("success", {"status": "SUCCESS", "result": {"ok": True, "text": "3 results", "usage": {"provider_calls": 1}}},
     ToolResult(text="3 results", usage={"provider_calls": 1})),
    ("success without a body", {"status": "SUCCESS", "result": None}, ToolResult()),
    ("a tool's own failure", {"status": "SUCCESS", "result": {"ok": False, "text": "no such page",
                                                               "error_kind": "http_status"}},
     ToolResult.failure("http_status", "no such page")),
    ("revoked", {"status": "REVOKED"}, ToolResult.failure("cancelled", "web_visit was cancelled")),
    ("hard time limit", {"status": "FAILURE", "result": {"exc_type": "TimeLimitExceeded", "exc_message": "300"}},
     ToolResult.failure("timeout", "web_visit was killed at the worker's hard time limit")),
    ("worker crash", {"status": "FAILURE", "result": {"exc_type": "WorkerLostError", "exc_message": "signal 9"}},
     ToolResult.failure("worker_failure", "web_visit failed in the worker (WorkerLostError): signal 9")),
    ("failure without details", {"status": "FAILURE", "result": "boom"},
     ToolResult.failure("worker_failure", "web_visit failed in the worker (error): boom")),
]


@pytest.mark.parametrize(("case", "meta", "expected"), RESULTS, ids=[r[0] for r in RESULTS])
def test_celery_results_map_to_tool_results(case: str, meta: dict[str, Any], expected: ToolResult) -> None:
    assert _to_result("web_visit", meta) == expected


async def _no_download(url: str, limit: int) -> bytes:
    raise ConnectionError(f"connection refused by {url.split('/')[2]}")


@pytest.fixture
async def validator(redis_server: RedisServer) -> AsyncIterator[RequestValidator]:
    client = aredis.Redis.from_url(redis_server.url)
    yield RequestValidator(GatewaySettings(max_question_chars=100, max_images_per_request=2),
                           ModelSettings(max_tokens=1000), CommonSettings(), AsyncBlobStore(client, 60), _no_download,
                           catalog())
    await client.aclose()


def _request(**fields: Any) -> pb.RunRequest:
    budgets = pb.Budgets(**fields.pop("budgets", {}))
    sampling = pb.SamplingParameters(**fields.pop("sampling", {}))
    return pb.RunRequest(**({"question": "Who is this?"} | fields), budgets=budgets, sampling=sampling)


REFUSALS = [
    ("empty question", _request(question="  \n"), "question is empty"),
    ("long question", _request(question="x" * 101), "question is 101 characters, over the limit of 100"),
    ("unknown mode", _request(mode=9), "mode 9 is not one of"),
    ("too many images", _request(images=[pb.ImageInput(data=b"x")] * 3), "3 images, over the limit of 2"),
    ("negative steps", _request(budgets={"max_steps": -1}), "budgets.max_steps is -1"),
    ("steps over the limit", _request(budgets={"max_steps": 65}), "over the server's limit of 64"),
    ("tool calls over the limit", _request(budgets={"max_tool_calls": 257}), "budgets.max_tool_calls is 257"),
    ("NaN deadline", _request(budgets={"deadline_s": math.nan}), "budgets.deadline_s is nan"),
    ("deadline over the limit", _request(budgets={"deadline_s": 4000}), "budgets.deadline_s is 4000, over"),
    ("temperature", _request(sampling={"temperature": 2.5}), "sampling.temperature is 2.5"),
    ("top_p", _request(sampling={"top_p": 0.0}), "sampling.top_p is 0"),
    ("top_k", _request(sampling={"top_k": 0}), "sampling.top_k is 0"),
    ("max_tokens", _request(sampling={"max_tokens": 1001}), "sampling.max_tokens is 1001; it must be within [1, 1000]"),
    ("long model name", _request(model="m" * 300), "model is 300 characters, over the limit of 256"),
    ("empty image", _request(images=[pb.ImageInput()]), "image 1 has neither data nor url"),
    ("image URL that fails", _request(images=[pb.ImageInput(url="http://img.test/a.png")]),
     "image 1: could not download 'http://img.test/a.png': connection refused by img.test"),
    ("corrupt image", _request(images=[pb.ImageInput(data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)]), "image 1:"),
    ("unknown tool offered", _request(tools=["text_search", "teleport"]), "tools: unknown tool 'teleport'"),
    ("tool not in the mode", _request(mode=pb.MODE_GENERAL, tools=["text_search"]),
     "tools: 'text_search' is not available in general mode"),
    ("tool of a service turned off", _request(enable_search=False, tools=["web_visit"]),
     "tools: 'web_visit' is turned off by enable_search=false"),
]


@pytest.mark.parametrize(("case", "request_", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_bad_requests_are_refused_saying_what_is_wrong(validator: RequestValidator, case: str,
                                                            request_: pb.RunRequest, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await validator.validate(request_)
    assert message in str(info.value)


async def test_a_good_request_gets_defaults_for_what_it_leaves_out(validator: RequestValidator) -> None:
    spec = await validator.validate(_request(question=" Who? ", mode=pb.MODE_GENERAL, budgets={"max_steps": 3},
                                             sampling={"top_k": 5, "seed": 7}))
    assert (spec.question, spec.mode, spec.model) == ("Who?", "general", ModelSettings().default_model)
    assert (spec.max_steps, spec.max_tool_calls, spec.deadline_s) == (3, 48, 300.0)
    assert spec.sampling == {"temperature": 0.2, "max_tokens": 1000, "top_k": 5, "seed": 7}
    assert (await validator.validate(_request())).mode == "deep_research"


async def test_a_tool_offer_is_kept_as_canonical_names_once_each(validator: RequestValidator) -> None:
    spec = await validator.validate(_request(tools=["web_visit", "read_text", "web_visit"]))
    assert spec.tools == ("web_visit", "ocr")  # an alias names its tool
    assert (await validator.validate(_request())).tools == ()  # none: every tool of the mode


def _text(step: int, channel: pb.Channel, text: str) -> pb.RunEvent:
    return pb.RunEvent(step=step, text=pb.TextDelta(channel=channel, text=text))


THINK, ANSWER, OTHER = pb.CHANNEL_THINK, pb.CHANNEL_ANSWER, pb.CHANNEL_UNSPECIFIED
CALL = pb.RunEvent(step=1, tool_call=pb.ToolCall(call_id="s1c1", name="code"))
FINISHED = pb.RunEvent(step=2, finished=pb.TrajectoryFinished(status=pb.STATUS_COMPLETED))
# Each case is followed by the `finished` event every trajectory ends with.
MERGES = [
    ("deltas of one step and channel", [_text(1, THINK, "lo"), _text(1, THINK, "ok")], [(1, THINK, "look")]),
    ("a channel change", [_text(1, THINK, "a"), _text(1, ANSWER, "b"), _text(1, ANSWER, "c")],
     [(1, THINK, "a"), (1, ANSWER, "bc")]),
    ("a step change", [_text(1, THINK, "a"), _text(2, THINK, "b")], [(1, THINK, "a"), (2, THINK, "b")]),
    ("another event between", [_text(1, OTHER, "<tool"), CALL, _text(1, OTHER, "_call>")],
     [(1, OTHER, "<tool"), "tool_call", (1, OTHER, "_call>")]),
    ("text of different steps with nothing between", [_text(1, ANSWER, "a"), _text(2, ANSWER, "b")],
     [(1, ANSWER, "a"), (2, ANSWER, "b")]),
]


@pytest.mark.parametrize(("case", "events", "stored"), MERGES, ids=[m[0] for m in MERGES])
async def test_the_recorder_merges_text_deltas_per_step_and_channel(redis_server: RedisServer, case: str,
                                                                     events: list[pb.RunEvent], stored: list) -> None:
    client = aredis.Redis.from_url(redis_server.url)
    try:
        record = recorder.TrajectoryRecorder(client, f"merge-{case}", 60)
        await record.begin("q", pb.MODE_GENERAL, "m")
        for event in [*events, FINISHED]:
            await record.record(event)
        trajectory = await recorder.load(client, f"merge-{case}")
    finally:
        await client.aclose()
    assert trajectory is not None
    got = [(e.step, e.text.channel, e.text.text) if e.WhichOneof("event") == "text" else e.WhichOneof("event")
           for e in trajectory.events]
    assert got == [*stored, "finished"]
