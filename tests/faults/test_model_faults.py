"""Triton dying mid-stream is a named, one-line `model_unavailable`; new runs get UNAVAILABLE while it is down;
the gateway finds it again when it is back, without a restart."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import kill_group, script
from toolfabric import Client, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
SLOW = {"text": "<think>" + "thinking " * 2000 + "</think><answer>too late</answer>", "chunk_delay_s": 0.01}


def test_triton_killed_mid_stream_fails_the_run_as_model_unavailable_and_recovers(
        fault_stack: EmbeddedStack, fault_client: Client) -> None:
    seen: list[pb.RunEvent] = []
    killed_at = 0.0
    for event in fault_client.events(script(SLOW), model="toolfabric_scripted"):
        seen.append(event)
        if not killed_at and sum(e.HasField("text") for e in seen) == 3:
            kill_group(fault_stack.triton.pid)
            killed_at = time.monotonic()
    detected_s = time.monotonic() - killed_at
    # The client saw how it ended: a named error, one line, then `finished` FAILED.
    assert seen[-1].HasField("finished") and seen[-1].finished.status == pb.STATUS_FAILED
    errors = [e.error for e in seen if e.HasField("error")]
    assert [e.code for e in errors] == ["model_unavailable"] and errors[0].fatal
    assert "\n" not in errors[0].message and "AioRpcError" not in errors[0].message
    assert "dropped the stream" in errors[0].message, errors[0].message
    assert detected_s < 5
    # The record says the same.
    assert fault_client.trajectory(seen[-1].trajectory_id).status == pb.STATUS_FAILED

    try:
        # A new run while Triton is down: UNAVAILABLE, naming the model service — not INVALID_ARGUMENT.
        with pytest.raises(Unavailable, match="model_unavailable"):
            fault_client.ask(script("<answer>no</answer>"), model="toolfabric_scripted")
    finally:
        fault_stack.triton.stop()
        fault_stack.triton.start()
    # Back on the same port: the same gateway serves again (reconnect backoff capped at 1 s in this suite).
    started = time.monotonic()
    while True:
        try:
            result = fault_client.ask(script("<answer>back</answer>"), model="toolfabric_scripted")
            break
        except Unavailable:
            assert time.monotonic() - started < 10, "the gateway did not find Triton again"
            time.sleep(0.5)
    assert (result.status, result.answer) == ("STATUS_COMPLETED", "back")
    print(f"\n[faults] Triton killed: stream failed {detected_s:.2f}s later; served again "
          f"{time.monotonic() - started:.1f}s after Triton was back")
