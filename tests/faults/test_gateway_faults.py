"""Two gateway replicas on one Redis: a trajectory whose gateway is SIGKILLed or SIGTERMed goes on on the
survivor from its last completed step, and the client re-attaches with Watch."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import code_call, gateway_process, kill_group, script
from toolfabric import Client, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
STEPS = (code_call("print('one')"), code_call("import time\ntime.sleep(4)\nprint('two')"), "<answer>done</answer>")


def _observations(record: pb.Trajectory) -> list[tuple[int, str]]:
    return [(e.step, e.observation.text) for e in record.events if e.HasField("observation")]


def test_sigkilled_gateway_trajectory_resumes_on_the_survivor_from_its_last_completed_step(
        fault_stack: EmbeddedStack, fault_client: Client, tmp_path: Path) -> None:
    seen: list[pb.RunEvent] = []
    with gateway_process(fault_stack, tmp_path) as (target, gateway), Client(target, timeout_s=60) as doomed:
        with pytest.raises(Unavailable):  # the stream breaks: a gRPC error, never a silent end
            for event in doomed.events(script(*STEPS), model="toolfabric_scripted"):
                seen.append(event)
                if event.HasField("tool_call") and event.step == 2:
                    kill_group(gateway.proc.pid)
    tid, last_seq = seen[0].trajectory_id, seen[-1].seq
    # Re-attach on the survivor from the next event on: its reaper found the expired lease and resumed it.
    rest = list(fault_client.watch(tid, from_seq=last_seq + 1))
    kinds = [e.WhichOneof("event") for e in rest]
    resumed = next(e for e in rest if e.HasField("resumed"))
    assert resumed.resumed.from_step == 2 and resumed.seq == last_seq + 1
    assert kinds[-1] == "finished" and rest[-1].finished.status == pb.STATUS_COMPLETED
    assert rest[-1].finished.resumes == 1
    assert all(e.seq > last_seq for e in rest)
    record = fault_client.trajectory(tid)
    assert record.status == pb.STATUS_COMPLETED and record.resumes == 1 and record.answer == "done"
    # Step 1's tool result was kept, not run again; step 2 ran again on the survivor.
    assert _observations(record) == [(1, "one"), (2, "two")]


def test_watch_after_a_sigkill_mid_model_stream_gives_every_event_once(
        fault_stack: EmbeddedStack, fault_client: Client, tmp_path: Path) -> None:
    """The text the client saw of the step being streamed is recorded with its seq; Watch from the client's
    last seq + 1 gives the rest of what was recorded, the `resumed` event and the re-run step, no seq reused."""
    slow = {"text": "<think>" + "streaming " * 200 + "</think>" + code_call("print('one')"), "chunk_delay_s": 0.02}
    seen: list[pb.RunEvent] = []
    with gateway_process(fault_stack, tmp_path) as (target, gateway), Client(target, timeout_s=60) as doomed:
        with pytest.raises(Unavailable):
            for event in doomed.events(script(slow, "<answer>done</answer>"), model="toolfabric_scripted"):
                seen.append(event)
                if sum(e.HasField("text") for e in seen) == 40:  # mid-model-stream
                    kill_group(gateway.proc.pid)
    tid = seen[0].trajectory_id
    rest = list(fault_client.watch(tid, from_seq=seen[-1].seq + 1))
    stream = seen + rest
    assert [e.seq for e in stream] == list(range(1, len(stream) + 1))  # no gap, no duplicate, no reuse
    resumed = next(e for e in rest if e.HasField("resumed"))
    assert resumed.resumed.from_step == 1 and resumed.resumed.from_seq == resumed.seq - 1
    assert rest[-1].finished.status == pb.STATUS_COMPLETED and rest[-1].finished.resumes == 1
    # The record keeps the cut-short attempt's text (every delta the client saw) and the re-run.
    record = fault_client.trajectory(tid)
    before = "".join(e.text.text for e in stream if e.HasField("text") and e.seq < resumed.seq)
    kept = "".join(e.text.text for e in record.events if e.HasField("text") and e.seq < resumed.seq)
    assert "streaming" in before and kept == before


def test_detection_of_a_lost_gateway_takes_about_one_lease(fault_stack: EmbeddedStack, fault_client: Client,
                                                            tmp_path: Path) -> None:
    slow = code_call("import time\ntime.sleep(6)\nprint('late')")
    with gateway_process(fault_stack, tmp_path) as (target, gateway), Client(target, timeout_s=60) as doomed:
        events = doomed.events(script(slow, "<answer>ok</answer>"), model="toolfabric_scripted")
        tid = ""
        for event in events:
            tid = event.trajectory_id
            if event.HasField("tool_call"):
                kill_group(gateway.proc.pid)
                killed_at = time.monotonic()
                break
        events.close()
    while fault_client.trajectory(tid).resumes == 0:
        assert time.monotonic() - killed_at < 10, "no replica took the trajectory over"
        time.sleep(0.1)
    detected_s = time.monotonic() - killed_at
    assert detected_s < 3 + 0.5 + 2.5  # lease TTL + reaper interval, with slack for this busy machine
    print(f"\n[faults] gateway SIGKILLed: resumed on the survivor {detected_s:.1f}s later (lease TTL 3 s)")
    # Cancel tells the truth: it stops the resumed run on the survivor, and the record says so.
    reply = fault_client.cancel(tid)
    assert reply.cancelled and reply.status == "STATUS_CANCELLED"
    assert fault_client.trajectory(tid).status == pb.STATUS_CANCELLED


def test_sigterm_hands_running_trajectories_to_another_replica(fault_stack: EmbeddedStack, fault_client: Client,
                                                               tmp_path: Path) -> None:
    seen: list[pb.RunEvent] = []
    with gateway_process(fault_stack, tmp_path) as (target, gateway), Client(target, timeout_s=60) as leaving:
        with pytest.raises(Unavailable, match="Watch it from seq") as broke:
            for event in leaving.events(script(*STEPS), model="toolfabric_scripted"):
                seen.append(event)
                if event.HasField("tool_call") and event.step == 2:
                    gateway.proc.send_signal(signal.SIGTERM)  # grace of 1 s, then hand-off
        assert gateway.proc.wait(20) == 0
    from_seq = int(str(broke.value).rsplit("seq ", 1)[1])
    assert from_seq == seen[-1].seq + 1
    rest = list(fault_client.watch(seen[0].trajectory_id, from_seq=from_seq))
    assert rest[0].HasField("resumed") and rest[-1].finished.status == pb.STATUS_COMPLETED
    assert fault_client.trajectory(seen[0].trajectory_id).status == pb.STATUS_COMPLETED


def test_cancel_of_a_trajectory_whose_gateway_just_died_ends_it_cancelled(
        fault_stack: EmbeddedStack, fault_client: Client, tmp_path: Path) -> None:
    slow = code_call("import time\ntime.sleep(6)\nprint('late')")
    with gateway_process(fault_stack, tmp_path) as (target, gateway), Client(target, timeout_s=60) as doomed:
        events = doomed.events(script(slow, "<answer>ok</answer>"), model="toolfabric_scripted")
        for event in events:
            if event.HasField("tool_call"):
                kill_group(gateway.proc.pid)
                break
        events.close()
    # Its lease has not expired yet: nobody runs it, nobody has taken it over. Cancel waits for the truth.
    reply = fault_client.cancel(event.trajectory_id)
    assert reply.cancelled and reply.status == "STATUS_CANCELLED"
    record = fault_client.trajectory(event.trajectory_id)
    assert record.status == pb.STATUS_CANCELLED and record.events[-1].finished.status == pb.STATUS_CANCELLED
