"""The step API end to end: an RL trainer's actions through verl-tool's HTTP contract and the gRPC
Step RPC, on the real stack (Redis, Celery workers, two gateway processes sharing the state)."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import extra_gateway
from tests.support.otlp_receiver import OtlpReceiver
from toolfabric import AsyncClient, Client, InvalidArgument
from toolfabric.spans import SpanRecord
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration

FLIP = ('<think>mirror it</think><tool_call>{"name": "code", "arguments": '
        '{"code": "save(cv2.flip(image, 1), \'m\')"}}</tool_call>')


@pytest.fixture(scope="module")
def step_url(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway process with verl-tool's HTTP door open (the stack's own gateway has none)."""
    port = free_port()
    with extra_gateway(stack, tmp_path_factory.mktemp("step-gateway"), TOOLFABRIC_STEP_HTTP_PORT=str(port),
                       TOOLFABRIC_STEP_MAX_ACTION_CHARS="2000", TOOLFABRIC_STEP_MAX_REQUEST_BYTES="200000"):
        url = f"http://127.0.0.1:{port}/get_observation"
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url


def post(url: str, **body: object) -> httpx.Response:
    return httpx.post(url, json=body, timeout=120)


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def test_verl_tool_rollout_runs_tools_keeps_images_and_ends_on_the_answer(step_url: str, client: Client,
                                                                          demo_dir: Path) -> None:
    photo = data_url(demo_dir / "question.jpg")
    first = post(step_url, trajectory_ids=["rl-a", "rl-b"], actions=[FLIP, "I am not sure what to do"],
                 finish=[False, False], is_last_step=[False, False],
                 extra_fields=[{"images": [photo], "question": "who?"}, {}]).json()
    assert first["valids"] == [True, False] and first["dones"] == [False, False]
    obs_a, obs_b = first["observations"]
    assert "tool: code (call s1c1)" in obs_a["obs"] and "<sub-image 1>" in obs_a["obs"]
    assert obs_a["image"].startswith("data:image/png;base64,")
    assert "neither a tool call nor an answer" in obs_b  # the error observation the model reads next

    # The next step of the same trajectory on the other gateway process: state lives in Redis.
    [second] = client.step(["rl-a"], ['<tool_call>{"name": "crop", "arguments": {"image": "<sub-image 1>", '
                                      '"bbox": [0, 0, 64, 48]}}</tool_call>'])
    assert second.valid and not second.done, second.text
    assert [(i.name, i.width, i.height) for i in second.images] == [("<sub-image 2>", 64, 48)]

    third = post(step_url, trajectory_ids=["rl-a"], actions=["<think>done</think><answer>a lighthouse</answer>"])
    assert third.json() == {"observations": [""], "dones": [True], "valids": [True]}

    # Recorded like a Run: GetTrajectory has the calls, observations and the answer.
    recorded = client.trajectory("rl-a")
    kinds = [e.WhichOneof("event") for e in recorded.events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert [e.tool_call.name for e in recorded.events if e.WhichOneof("event") == "tool_call"] == ["code", "crop"]
    assert recorded.answer == "a lighthouse" and recorded.status == pb.STATUS_COMPLETED
    assert recorded.question == "who?" and recorded.trace_id
    # The trainer's whole action, recorded as the step's text (one merged event per run of a channel), in order.
    first_text = [e for e in recorded.events if e.step == 1 and e.WhichOneof("event") == "text"]
    assert "".join(e.text.text for e in first_text) == FLIP
    assert all(a.text.channel != b.text.channel for a, b in itertools.pairwise(first_text))
    seqs = [e.seq for e in recorded.events]
    assert seqs == sorted(set(seqs)), seqs

    again = post(step_url, trajectory_ids=["rl-a"], actions=[FLIP]).json()
    assert again["valids"] == [False] and again["dones"] == [True]
    assert "has already finished (the model answered)" in again["observations"][0]
    done = post(step_url, trajectory_ids=["rl-b"], actions=[""], finish=[True]).json()
    assert done == {"observations": [""], "dones": [True], "valids": [True]}
    assert client.trajectory("rl-b").events[-1].finished.reason == "finished by the trainer"


def test_bad_step_requests_are_clear_errors_and_spare_the_other_items(step_url: str) -> None:
    mismatched = post(step_url, trajectory_ids=["x", "y"], actions=["a"], finish=[False, False])
    assert mismatched.status_code == 400
    assert mismatched.json()["error"] == ("the lists must be parallel (one entry per trajectory), but their "
                                          "lengths differ: trajectory_ids=2, actions=1, finish=2")
    twice = post(step_url, trajectory_ids=["x", "x"], actions=["a", "b"])
    assert twice.status_code == 400 and "appears twice (positions 0 and 1)" in twice.json()["error"]
    not_json = httpx.post(step_url, content=b"{not json", timeout=30)
    assert not_json.status_code == 400 and "not a get_observation request" in not_json.json()["error"]
    too_big = post(step_url, trajectory_ids=["x"], actions=["y" * 300_000])
    assert too_big.status_code == 413 and "over the limit of 200000" in too_big.json()["error"]
    bad_image = post(step_url, trajectory_ids=["x"], actions=["a"], extra_fields=[{"images": ["%%%"]}])
    assert bad_image.status_code == 400 and "extra_fields[0].images[0]" in bad_image.json()["error"]

    mixed = post(step_url, trajectory_ids=["never-seen", "huge", "fine"],
                 actions=["", "x" * 5000, '<tool_call>{"name": "text_search", "arguments": {"queries": '
                                         '["lighthouse"]}}</tool_call>'],
                 finish=[True, False, False]).json()
    assert mixed["valids"] == [False, False, True] and mixed["dones"] == [True, False, False]
    assert "unknown trajectory id 'never-seen'" in mixed["observations"][0]
    assert "action is 5000 characters, over the limit of 2000" in mixed["observations"][1]
    assert "tool: text_search" in mixed["observations"][2]
    # The refused huge action left nothing behind: the id is still unknown.
    assert "unknown trajectory id 'huge'" in post(step_url, trajectory_ids=["huge"], actions=[""],
                                                  finish=[True]).json()["observations"][0]


def test_grpc_step_refuses_a_malformed_request_and_reports_bad_tools_as_observations(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="appears twice"):
        client.step(["g", "g"], ["a", "b"])
    [unknown, bad_args] = client.step(["g1", "g2"], [
        '<tool_call>{"name": "teleport", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "crop", "arguments": {"bbox": "nope"}}</tool_call>'], mode="general")
    assert unknown.valid and "error (unknown_tool): unknown tool 'teleport'" in unknown.text
    assert bad_args.valid and "error (invalid_argument)" in bad_args.text
    assert [unknown.trajectory_id, bad_args.trajectory_id] == ["g1", "g2"]


def test_a_stepped_trajectory_is_one_trace_across_requests(client: Client, otlp_receiver: OtlpReceiver) -> None:
    code = '<tool_call>{"name": "code", "arguments": {"code": "print(1)"}}</tool_call>'
    for _ in range(2):
        [step] = client.step(["traced-1"], [code])
        assert step.valid and not step.done
    trace_id = client.trajectory("traced-1").trace_id

    def complete(spans: list[SpanRecord]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return (sum(s.name == "execute_tool code" for s in mine) == 2
                and any(s.service != "toolfabric-gateway" for s in mine))

    spans = [s for s in otlp_receiver.wait_for(complete, 30) if s.trace_id == trace_id]
    names = [s.name for s in spans]
    assert {"invoke_agent toolfabric", "step 1", "step 2"} <= set(names)
    root = next(s for s in spans if s.name == "invoke_agent toolfabric")
    assert all(s.parent_id == root.span_id for s in spans if s.name.startswith("step "))
    assert any(s.service != "toolfabric-gateway" for s in spans)  # the worker's side joins the same trace


async def test_the_asyncio_client_steps_too(stack: EmbeddedStack) -> None:
    async with AsyncClient(stack.target, timeout_s=120) as client:
        [first] = await client.step(["async-1"], ['<tool_call>{"name": "code", "arguments": {"code": "print(2 + 2)"}}'
                                                  '</tool_call>'], mode="general")
        assert first.valid and "4" in first.text
        [done] = await client.step(["async-1"], [""], finish=[True])
        assert done.done and done.valid
