"""Where a lost trajectory resumes (from its record), and bounded admission."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import Admission, AdmissionRefused
from gateway.resume import checkpoint
from toolfabric.v1 import fabric_pb2 as pb


def _events(*specs: tuple[int, str, dict]) -> list[pb.RunEvent]:
    return [pb.RunEvent(seq=i + 1, step=step, **{kind: fields}) for i, (step, kind, fields) in enumerate(specs)]


def _record(*specs: tuple[int, str, dict]) -> pb.Trajectory:
    record = pb.Trajectory(trajectory_id="t", status=pb.STATUS_RUNNING, events=_events(*specs))
    record.created_at.FromSeconds(1000)
    return record


STEP1 = [(0, "started", pb.TrajectoryStarted()),
         (1, "text", pb.TextDelta(channel=pb.CHANNEL_THINK, text="<think>crop</think>")),
         (1, "text", pb.TextDelta(text='<tool_call>{"name": "crop"}</tool_call>')),
         (1, "tool_call", pb.ToolCall(call_id="s1c1", name="crop")),
         (1, "observation", pb.Observation(call_id="s1c1", name="crop", text="ok",
                                           images=[pb.ImageRef(name="<sub-image 1>", blob="sha256:a", step=1)]))]


def test_resume_keeps_completed_steps_and_reruns_the_step_whose_call_had_no_result() -> None:
    record = _record(*STEP1, (2, "text", pb.TextDelta(text="<tool_call>…</tool_call>")),
                     (2, "tool_call", pb.ToolCall(call_id="s2c1", name="code")),
                     (2, "tool_call", pb.ToolCall(call_id="s2c2", name="crop")),
                     (2, "observation", pb.Observation(call_id="s2c2", name="crop", text="ok")))
    point = checkpoint(record, now_s=1012.5)
    assert [s.step for s in point.steps] == [1] and point.next_step == 2
    assert point.steps[0].text == '<think>crop</think><tool_call>{"name": "crop"}</tool_call>'
    assert point.last_seq == 9 and point.elapsed_s == pytest.approx(12.5)
    assert point.tool_calls() == {"crop": 1} and point.answer is None


def test_resume_after_an_earlier_resume_forgets_the_partial_step_it_replaced() -> None:
    record = _record(*STEP1, (2, "text", pb.TextDelta(text="partial")),
                     (2, "resumed", pb.TrajectoryResumed(from_step=2, from_seq=6)),
                     (2, "text", pb.TextDelta(text="<answer>x</answer>")),
                     (2, "answer", pb.FinalAnswer(text="x")))
    point = checkpoint(record, now_s=1001)
    assert point.resumes == 1 and point.answer == "x"  # it had answered: only `finished` was lost
    assert [s.step for s in point.steps] == [1]


def test_refused_calls_do_not_count_against_the_tool_budget_on_resume() -> None:
    record = _record(*STEP1[:4], (1, "observation", pb.Observation(call_id="s1c1", name="nope", is_error=True,
                                                                    error_kind="unknown_tool")))
    assert checkpoint(record, now_s=1000).tool_calls() == {}


def test_admission_refuses_with_a_retry_hint_when_slots_and_queue_are_full() -> None:
    async def main() -> None:
        admission = Admission(max_running=1, queue=1, wait_s=0.2)
        async with admission.slot():
            waiting = asyncio.create_task(_enter(admission))
            await asyncio.sleep(0.01)
            with pytest.raises(AdmissionRefused, match="1 trajectories running and 1 waiting") as full:
                async with admission.slot():
                    pass
            assert full.value.retry_after_s >= 1
            with pytest.raises(AdmissionRefused, match=r"no slot for a new trajectory within 0\.2s"):
                await waiting
        async with admission.slot():  # released: the next one runs
            assert admission.running == 1

    asyncio.run(main())


async def _enter(admission: Admission) -> None:
    async with admission.slot():
        pass
