"""A worker that dies whole or loses a pool process: calls fail fast or run again, and the record says so."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import alive
from tests.faults.conftest import code_call, kill_group, script
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.processes import wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


def _restart_vision(stack: EmbeddedStack) -> None:
    """Start the vision worker again and wait until it consumes (a new name beats in the consumer registry)."""
    client = redis.Redis.from_url(stack.redis.url)
    try:
        before = set(client.zrange("toolfabric:consumers:vision", 0, -1))
        stack.restart_worker("vision")
        child = stack.children["worker-vision"]
        wait_until(lambda: bool(set(client.zrange("toolfabric:consumers:vision", 0, -1)) - before), 60,
                   "vision worker", child.proc, child.log)
    finally:
        client.close()


def _wait_until_running(stack: EmbeddedStack, trajectory_id: str) -> None:
    """Until a vision worker runs this trajectory's call (Celery's own `inspect active`, which shows the args)."""
    from celery import Celery

    app = Celery(broker=stack.redis.url, backend=stack.redis.url)
    try:
        def running() -> bool:
            replies = app.control.inspect(timeout=0.5).active() or {}
            return any(trajectory_id in json.dumps(task.get("args")) for tasks in replies.values() for task in tasks)
        wait_until(running, 20, "the worker to start the call")
    finally:
        app.close()


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_call_to_a_service_whose_worker_died_is_unavailable_within_seconds(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    kill_group(fault_stack.children["worker-vision"].proc.pid)
    try:
        started = time.monotonic()
        result = fault_client.ask(script(code_call("print(1)"), "<answer>done</answer>"), model="toolfabric_scripted")
        took = time.monotonic() - started
    finally:
        _restart_vision(fault_stack)
    # The model read an `unavailable` observation within seconds (heartbeat age 2 s + 1 s wait here),
    # not after the 60 s tool timeout; the trajectory itself went on and completed.
    [obs] = result.observations
    assert obs.error_kind == "unavailable" and "no live 'vision' worker" in obs.text, obs.text
    assert took < 8
    print(f"\n[faults] worker dead: `unavailable` observation after {took:.1f}s")
    assert result.status == "STATUS_COMPLETED"
    record = fault_client.trajectory(result.trajectory_id)
    assert [e.observation.error_kind for e in record.events if e.HasField("observation")] == ["unavailable"]


def test_task_of_a_worker_killed_whole_is_sent_again_and_the_record_shows_two_attempts(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    marker = f"slept-{time.time_ns()}"  # finds this call's messages in the broker
    step = code_call(f"import time\ntime.sleep(3)\nprint('{marker}')")
    seen: list[pb.RunEvent] = []
    killed_at = 0.0
    for event in fault_client.events(script(step, "<answer>done</answer>"), model="toolfabric_scripted"):
        seen.append(event)
        if event.HasField("tool_call"):
            _wait_until_running(fault_stack, event.trajectory_id)
            kill_group(fault_stack.children["worker-vision"].proc.pid)
            killed_at = time.monotonic()
            _restart_vision(fault_stack)  # what `toolfabric up`'s supervisor or Kubernetes does
        if event.HasField("observation"):
            recovered_s = time.monotonic() - killed_at
    [obs] = [e.observation for e in seen if e.HasField("observation")]
    assert not obs.is_error and "slept" in obs.text, obs.text
    assert obs.attempts == 2  # ran twice: once on the dead worker, once on its replacement
    assert recovered_s < 30  # not the broker's visibility timeout (an hour)
    print(f"\n[faults] worker killed mid-task: result of the resent task {recovered_s:.1f}s after the kill")
    assert seen[-1].finished.status == pb.STATUS_COMPLETED
    record = fault_client.trajectory(seen[-1].trajectory_id)
    assert [e.observation.attempts for e in record.events if e.HasField("observation")] == [2]
    # The dead worker's message left the broker's `unacked` set when the call was sent again: it will not be
    # run a third time when the visibility timeout hands it back, and `unacked` does not grow per killed worker.
    broker = redis.Redis.from_url(fault_stack.redis.url)
    try:
        left = [tag for tag, message in broker.hgetall("unacked").items() if marker.encode() in message]
        assert not left, f"{len(left)} message(s) of the killed worker's call are still unacked"
    finally:
        broker.close()


def test_pool_process_killed_mid_task_is_redelivered_by_celery_and_the_call_completes(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    main = fault_stack.children["worker-vision"].proc.pid
    step = code_call("import time\ntime.sleep(2)\nprint('survived')")
    seen: list[pb.RunEvent] = []
    started = 0.0
    for event in fault_client.events(script(step, "<answer>done</answer>"), model="toolfabric_scripted"):
        seen.append(event)
        if event.HasField("tool_call"):
            _wait_until_running(fault_stack, event.trajectory_id)
            pool = [p for p in _children_of(main) if alive(p)]
            assert pool, "the worker has no pool process"
            for pid in pool:
                os.kill(pid, signal.SIGKILL)
            started = time.monotonic()
    [obs] = [e.observation for e in seen if e.HasField("observation")]
    # task_acks_late + task_reject_on_worker_lost: the message went back to the queue and ran again at once.
    assert not obs.is_error and "survived" in obs.text, obs.text
    assert obs.attempts == 2  # it ran twice, and the record says so
    assert time.monotonic() - started < 20
    assert fault_stack.children["worker-vision"].alive()  # the worker itself lived on
    assert seen[-1].finished.status == pb.STATUS_COMPLETED


def test_task_taken_by_a_worker_that_died_before_starting_it_is_sent_again(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    # The worker's pool is frozen, so the worker takes the call from the queue (it sits in `unacked`) but never
    # starts it; then the worker is killed whole. Without a STARTED record nothing names the dead worker: the
    # gateway finds the message still unacked and unstarted after TOOLFABRIC_GATEWAY_UNSTARTED_TIMEOUT_S (5 s
    # here) and sends the call again, instead of waiting for the tool timeout or the visibility timeout.
    marker = f"taken-{time.time_ns()}"
    main = fault_stack.children["worker-vision"].proc.pid
    pool = [p for p in _children_of(main) if alive(p)]
    assert pool, "the worker has no pool process"
    for pid in pool:
        os.kill(pid, signal.SIGSTOP)
    broker = redis.Redis.from_url(fault_stack.redis.url)
    seen: list[pb.RunEvent] = []
    killed_at = 0.0
    try:
        for event in fault_client.events(script(code_call(f"print('{marker}')"), "<answer>done</answer>"),
                                         model="toolfabric_scripted"):
            seen.append(event)
            if event.HasField("tool_call"):
                wait_until(lambda: any(marker.encode() in m for m in broker.hvals("unacked")), 20,
                           "the worker to take the call")
                kill_group(main)
                killed_at = time.monotonic()
                _restart_vision(fault_stack)
    finally:
        broker.close()
    [obs] = [e.observation for e in seen if e.HasField("observation")]
    took = time.monotonic() - killed_at
    assert not obs.is_error and marker in obs.text, obs.text
    assert obs.attempts == 2
    assert took < 40  # not the 60 s tool timeout, not the 10 min visibility timeout
    print(f"\n[faults] worker died holding an unstarted call: result {took:.1f}s after the kill")
    assert seen[-1].finished.status == pb.STATUS_COMPLETED
