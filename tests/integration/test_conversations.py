"""Conversations: a turn continues earlier ones — their questions, answers and images — without rerunning
them, through gRPC (parent_trajectory_id) and through the HTTP API's messages history."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import openai
import pytest
from PIL import Image

from tests.integration.http_support import Api, api_gateway, script, user
from toolfabric import Client, InvalidArgument, NotFound
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
RECALL = {"recall": True}


def crop(image: str) -> str:
    return json.dumps({"name": "crop", "arguments": {"image": image, "bbox": [0, 0, 20, 20]}}).join(
        ("<tool_call>", "</tool_call>"))


def picture(color: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


RED, BLUE, GREEN = picture("red", (40, 30)), picture("blue", (64, 48)), picture("green", (50, 50))


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(stack, tmp_path_factory.mktemp("conversations")) as running:
        yield running


def images_of(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Name → blob of every image a turn had: its started images and what its tools made."""
    out = {i.name: i.blob for i in result.events[0].started.images}
    out |= {i.name: i.blob for o in result.observations for i in o.images}
    return out


def test_a_run_continues_its_parent_with_its_questions_answers_and_images(client: Client) -> None:
    question = script(crop("<image 1>"), "<answer>two pictures, one cropped</answer>")
    first = client.ask(question, images=[RED, BLUE], model="toolfabric_scripted")
    assert first.status == "STATUS_COMPLETED" and "<sub-image 1>" in images_of(first)
    # "Crop the second picture again", and work on the crop the first turn made.
    second = client.ask(script(crop("<image 2>"), crop("<sub-image 1>"), RECALL), model="toolfabric_scripted",
                        parent_trajectory_id=first.trajectory_id)
    assert second.status == "STATUS_COMPLETED", second.reason
    assert [o.is_error for o in second.observations] == [False, False], [o.text for o in second.observations]
    carried = images_of(second)
    assert {k: carried[k] for k in images_of(first)} == images_of(first)  # same names, same blobs
    assert [i.name for o in second.observations for i in o.images] == ["<sub-image 2>", "<sub-image 3>"]
    assert second.observations[0].images[0].width == 32  # cropped from the 64x48 blue picture, not the red one
    earlier = json.loads(second.answer or "")
    assert [role for role, _ in earlier] == ["user", "assistant"]
    assert earlier == [["user", question], ["assistant", "<answer>two pictures, one cropped</answer>"]]
    # Recorded: the parent link and one conversation id for both turns.
    record = client.trajectory(second.trajectory_id)
    assert record.parent_trajectory_id == first.trajectory_id
    assert record.conversation_id == client.trajectory(first.trajectory_id).conversation_id == first.trajectory_id
    # A third turn with a picture of its own: it is <image 3>, and every earlier turn is context.
    third = client.ask(script(crop("<image 3>"), RECALL), images=[GREEN], model="toolfabric_scripted",
                       parent_trajectory_id=second.trajectory_id)
    assert third.observations[0].images[0].name == "<sub-image 4>" and not third.observations[0].is_error
    assert [role for role, _ in json.loads(third.answer or "")] == ["user", "assistant"] * 2
    assert client.trajectory(third.trajectory_id).conversation_id == first.trajectory_id


def test_continuing_an_unknown_turn_or_another_conversation_is_invalid(client: Client) -> None:
    with pytest.raises(NotFound, match=r"no trajectory 'nope' \(unknown or its record expired\)"):
        client.ask("go on", parent_trajectory_id="nope", model="toolfabric_scripted")
    first = client.ask(script("<answer>a</answer>"), model="toolfabric_scripted")
    with pytest.raises(InvalidArgument, match="is not the parent's conversation"):
        client.ask("go on", parent_trajectory_id=first.trajectory_id, conversation_id="other",
                   model="toolfabric_scripted")


def test_http_messages_history_is_context_not_rerun(api: Api) -> None:
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0, timeout=120)
    earlier_answer = "<think>" + crop("<image 1>") + "</think><answer>a red picture</answer>"
    messages = [user("what is this?", RED), {"role": "assistant", "content": earlier_answer},
                user(script(crop("<image 1>"), RECALL), BLUE)]
    reply = client.chat.completions.create(model="test/scripted", messages=messages)  # type: ignore[arg-type]
    extra = reply.model_extra["toolfabric"]  # type: ignore[index]
    content = reply.choices[0].message.content or ""
    observation = json.loads(content.split("<observation>")[1].split("</observation>")[0])
    assert "error" not in observation
    earlier = json.loads(content.split("<answer>")[-1].split("</answer>")[0])
    # The earlier assistant turn became its answer, once: its tool call was not run again.
    assert earlier == [["user", "what is this?"], ["assistant", "<answer>a red picture</answer>"]]
    assert extra["usage"]["tool_calls"] == {"crop": 1} and extra["usage"]["steps"] == 2
    with Client(api.target) as grpc_client:
        started = grpc_client.trajectory(extra["trajectory_id"]).events[0].started
    assert [(i.name, i.width) for i in started.images] == [("<image 1>", 40), ("<image 2>", 64)]


def test_http_continues_a_recorded_turn_by_its_id(api: Api) -> None:
    with Client(api.target) as grpc_client:
        first = grpc_client.ask(script("<answer>blue it is</answer>"), images=[BLUE], model="toolfabric_scripted")
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model="test/scripted", messages=[user(script(crop("<image 1>"), RECALL))],  # type: ignore[list-item]
        extra_body={"toolfabric": {"parent_trajectory_id": first.trajectory_id}})
    extra = reply.model_extra["toolfabric"]  # type: ignore[index]
    assert extra["conversation_id"] == first.trajectory_id
    content = reply.choices[0].message.content or ""
    assert '"error"' not in content.split("<observation>")[1].split("</observation>")[0]
    with Client(api.target) as grpc_client:
        record = grpc_client.trajectory(extra["trajectory_id"])
    assert record.parent_trajectory_id == first.trajectory_id and record.status == pb.STATUS_COMPLETED


def test_the_cli_continues_a_turn(stack: EmbeddedStack, client: Client) -> None:
    import subprocess
    import sys

    first = client.ask(script("<answer>the red one</answer>"), images=[RED], model="toolfabric_scripted")
    run = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "run", "--target", stack.target,
                          "--model", "toolfabric_scripted", "--out", "", "--continue", first.trajectory_id,
                          script(crop("<image 1>"), RECALL)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the red one" in run.stdout  # the recalled earlier answer
    assert "<sub-image 1>" in run.stdout  # the crop of the carried picture


def test_continuing_after_the_earlier_images_expired_says_so(stack: EmbeddedStack, client: Client) -> None:
    import redis

    first = client.ask(script("<answer>green</answer>"), images=[GREEN], model="toolfabric_scripted")
    blob = first.events[0].started.images[0].blob
    with redis.Redis.from_url(stack.redis.url) as r:
        deleted = [key for key in r.scan_iter("*") if key.decode().endswith(blob.removeprefix("sha256:"))]
        assert deleted and r.delete(*deleted)
    with pytest.raises(InvalidArgument, match=r"expired from the blob store \(<image 1>"):
        client.ask("crop it", parent_trajectory_id=first.trajectory_id, model="toolfabric_scripted")
