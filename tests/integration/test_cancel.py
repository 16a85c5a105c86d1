"""Cancel stops a running trajectory: its model stream and its outstanding tool tasks."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import extra_gateway
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
# A model step that streams for about 20 s: long enough to cancel or time out mid-stream.
SLOW = {"text": "<think>" + "thinking " * 2000 + "</think><answer>too late</answer>", "chunk_delay_s": 0.01}


def start_script(client: Client, steps: list[object]):  # type: ignore[no-untyped-def]
    return client.events(json.dumps({"script": steps}), model="toolfabric_scripted")


def test_cancel_during_model_stream_stops_triton_and_records_cancelled(stack: EmbeddedStack, client: Client) -> None:
    events = start_script(client, [SLOW])
    seen: list[pb.RunEvent] = []
    t0 = None
    for event in events:
        seen.append(event)
        if t0 is None and sum(1 for e in seen if e.WhichOneof("event") == "text") == 5:
            t0 = time.monotonic()
            assert client.cancel(event.trajectory_id).cancelled
    assert t0 is not None
    finished = seen[-1]
    assert finished.finished.status == pb.STATUS_CANCELLED
    assert time.monotonic() - t0 < 3
    assert not any(e.WhichOneof("event") == "answer" for e in seen)
    assert client.trajectory(finished.trajectory_id).status == pb.STATUS_CANCELLED
    # Triton saw the cancellation and stopped generating well before the 2000 chunks.
    log = stack.triton._child.log  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "cancelled after" not in log.read_text():
        time.sleep(0.1)
    line = next(x for x in log.read_text().splitlines() if "cancelled after" in x)
    assert int(line.split("cancelled after ")[1].split(" of ")[0]) < 1000


def test_cancel_during_tool_call_revokes_the_task(stack: EmbeddedStack, client: Client) -> None:
    step = '<tool_call>{"name": "code", "arguments": {"code": "import time\\ntime.sleep(15)\\nprint(1)"}}</tool_call>'
    seen: list[pb.RunEvent] = []
    t0 = None
    for event in start_script(client, [step, "<answer>no</answer>"]):
        seen.append(event)
        if t0 is None and event.WhichOneof("event") == "tool_call":
            time.sleep(0.5)  # let the worker pick the task up
            t0 = time.monotonic()
            client.cancel(event.trajectory_id)
    assert seen[-1].finished.status == pb.STATUS_CANCELLED
    assert t0 is not None and time.monotonic() - t0 < 5
    # The worker no longer runs it: nothing active on the vision queue shortly after.
    from celery import Celery

    app = Celery(broker=stack.redis.url, backend=stack.redis.url)
    deadline = time.monotonic() + 10
    active: list = ["?"]
    while time.monotonic() < deadline:
        replies = app.control.inspect(timeout=1).active() or {}
        active = [t for host, tasks in replies.items() if host.startswith("vision-") for t in tasks]
        if not active:
            break
        time.sleep(0.5)
    assert active == []


def test_cancel_of_unknown_trajectory_is_not_found(client: Client) -> None:
    from toolfabric import NotFound

    with pytest.raises(NotFound):
        client.cancel("no-such-trajectory")


def test_client_going_away_cancels_the_trajectory(client: Client) -> None:
    events = start_script(client, [SLOW])
    first = next(iter(events))
    tid = first.trajectory_id
    events.close()  # the client stops reading: the gRPC call is cancelled
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and client.trajectory(tid).status == pb.STATUS_RUNNING:
        time.sleep(0.1)
    assert client.trajectory(tid).status == pb.STATUS_CANCELLED


def test_cancel_through_another_gateway_replica_stops_the_trajectory(stack: EmbeddedStack, client: Client,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen: list[pb.RunEvent] = []
    with extra_gateway(stack, tmp_path) as target, Client(target, timeout_s=60) as replica:
        for event in start_script(client, [SLOW]):
            seen.append(event)
            if len(seen) == 3:  # running on the stack's gateway; cancelled through the replica
                assert replica.cancel(event.trajectory_id).cancelled
    assert seen[-1].finished.status == pb.STATUS_CANCELLED
    assert len(seen) < 100


def test_deadline_budget_ends_a_slow_trajectory(client: Client) -> None:
    t0 = time.monotonic()
    result = client.ask(json.dumps({"script": [SLOW]}), model="toolfabric_scripted", deadline_s=1.0)
    assert (result.status, result.reason) == ("STATUS_BUDGET_EXHAUSTED", "deadline of 1s reached")
    assert time.monotonic() - t0 < 10  # 1 s of budget, not the 20 s the stream would take
    assert client.trajectory(result.trajectory_id).status == pb.STATUS_BUDGET_EXHAUSTED
