"""Redis restarted under running trajectories: every stream ends saying how, the record agrees once Redis is
back, new runs meanwhile get UNAVAILABLE, and the embedded Redis keeps its data across the restart (AOF)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.faults.conftest import code_call, kill_group, script, wait_for
from toolfabric import Client, ToolfabricError, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


def test_redis_restart_mid_run_ends_every_stream_and_the_record_matches(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    done = fault_client.ask(script("<answer>kept</answer>"), model="toolfabric_scripted")
    time.sleep(1.5)  # appendfsync everysec: older writes are on disk
    step = code_call("import time\ntime.sleep(2)\nprint('after')")
    outcomes: list[object] = []

    def run() -> None:
        seen: list[pb.RunEvent] = []
        try:
            for event in fault_client.events(script(step, "<answer>done</answer>"), model="toolfabric_scripted"):
                seen.append(event)
            outcomes.append(seen)
        except ToolfabricError as exc:  # an error status is an acceptable end; a silent one is not
            outcomes.append(exc)

    runs = [threading.Thread(target=run) for _ in range(3)]
    for thread in runs:
        thread.start()
    time.sleep(1.0)  # all three are in their tool call
    kill_group(fault_stack.redis.pid, signal.SIGKILL)
    fault_stack.redis.stop()
    try:
        with pytest.raises(Unavailable, match="Redis"):  # not UNKNOWN ConnectionError
            fault_client.ask(script("<answer>no</answer>"), model="toolfabric_scripted")
    finally:
        fault_stack.redis.start()  # same port, same data directory
    for thread in runs:
        thread.join(120)
    assert len(outcomes) == 3
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            continue
        assert isinstance(outcome, list) and outcome[-1].HasField("finished"), outcome
        finished = outcome[-1].finished
        tid = outcome[0].trajectory_id
        # The record ends as the client saw it (written again once Redis was back).
        wait_for(lambda t=tid, s=finished.status: fault_client.trajectory(t).status == s, 30,  # type: ignore[misc]
                 "the record's final status")
    # What was recorded before the crash survived it.
    assert fault_client.trajectory(done.trajectory_id).answer == "kept"


def test_redis_restart_under_load_turns_no_tool_call_into_an_error(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    # Pooled connections broken by the restart are checked or retried with backoff (common/
    # redis_clients.py), Celery publishes retry, results are stored once Redis is back: calls are delayed, not failed.
    # Each call also writes an image blob from the worker, and the gateway reads it back: Redis on both sides.
    step = code_call("import time\ntime.sleep(0.4)\nsave(np.full((32, 32, 3), 7, np.uint8))\nprint('ok')")
    question = script(*[step] * 4, "<answer>done</answer>")
    ended: list[list[pb.RunEvent] | Exception] = []

    def run() -> None:
        seen: list[pb.RunEvent] = []
        try:
            for event in fault_client.events(question, model="toolfabric_scripted"):
                seen.append(event)
            ended.append(seen)
        except ToolfabricError as exc:
            ended.append(exc)

    runs = [threading.Thread(target=run) for _ in range(4)]
    for thread in runs:
        thread.start()
    time.sleep(1.5)  # every run is between its tool calls
    started = time.monotonic()
    fault_stack.redis.stop()  # SIGTERM: Redis writes its append-only file and exits
    time.sleep(1.0)  # down for a second: calls meanwhile meet refused connections (worker heartbeats live 2 s)
    fault_stack.redis.start()  # same port, same data
    print(f"\n[faults] Redis restarted under 4 runs in {time.monotonic() - started:.1f}s")
    for thread in runs:
        thread.join(180)
    assert len(ended) == 4 and all(isinstance(seen, list) for seen in ended), ended
    for seen in ended:
        assert isinstance(seen, list)
        errors = [e.observation.text for e in seen if e.HasField("observation") and e.observation.is_error]
        assert not errors, errors
        assert seen[-1].finished.status == pb.STATUS_COMPLETED, seen[-1]
        assert sum(e.HasField("observation") for e in seen) == 4
