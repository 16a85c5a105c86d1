"""Where a lost trajectory resumes (from its record), and bounded admission."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway import admission as admission_module
from toolfabric_server.gateway.admission import CALL_TIMEOUT_KEY, Admission, AdmissionRefused, queued_s
from toolfabric_server.gateway.checkpoints import checkpoint


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


def test_admission_wait_counts_from_the_call_not_from_when_the_gateway_took_it_up() -> None:
    async def main() -> None:
        admission = Admission(max_running=1, queue=5, wait_s=1.0)
        async with admission.slot() as first:
            assert first.wait_s < 0.1 and abs(first.at - time.time()) < 1
            began = time.monotonic()
            with pytest.raises(AdmissionRefused, match=r"waited 1\.5s before this gateway could take it up"):
                async with admission.slot(queued_s=1.5):  # the call already waited longer than the wait
                    pass
            assert time.monotonic() - began < 0.05  # refused at once
            with pytest.raises(AdmissionRefused, match="within 1s of the call"):
                async with admission.slot(queued_s=0.7):  # 0.3 s left of the wait
                    pass
            assert 0.25 < time.monotonic() - began < 0.6
        async with admission.slot(queued_s=5.0) as late:  # a free slot admits even a late call
            assert late.wait_s >= 5.0

    asyncio.run(main())


def test_the_time_a_call_queued_is_its_declared_timeout_minus_what_is_left() -> None:
    assert queued_s([(CALL_TIMEOUT_KEY, "30000"), ("x", "y")], 26.5) == pytest.approx(3.5)
    assert queued_s([], 26.5) == 0.0 and queued_s([(CALL_TIMEOUT_KEY, "30000")], None) == 0.0
    assert queued_s([(CALL_TIMEOUT_KEY, "junk")], 1.0) == 0.0


def test_a_doors_marked_arrival_is_where_the_admission_wait_counts_from() -> None:
    # The chat and step doors ask for a slot without a queued time: it counts from the arrival their policy
    # layer marked in the call's task (the HTTP middleware, the gRPC interceptor), not from the slot request.
    async def main() -> None:
        admission = Admission(max_running=1, queue=5, wait_s=1.0)

        async def call(arrived_ago: float) -> float:
            admission_module.arrived(time.monotonic() - arrived_ago)
            began = time.monotonic()
            try:
                async with admission.slot():
                    return -1.0
            except AdmissionRefused:
                return time.monotonic() - began

        async with admission.slot():
            refused_at_once, refused_later = await asyncio.gather(asyncio.create_task(call(1.5)),
                                                                  asyncio.create_task(call(0.6)))
            assert 0 <= refused_at_once < 0.05  # it already waited longer than the wait
            assert 0.3 < refused_later < 0.6  # 0.4 s of the wait was left
        assert admission_module.queued_since_arrival() == 0.0  # this task's call marked nothing

    asyncio.run(main())


def test_the_http_policy_marks_a_requests_arrival_before_authentication() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from toolfabric_server.gateway.policy.authentication import make_authenticator
    from toolfabric_server.gateway.policy.http import RequireKey
    from toolfabric_server.gateway.settings import AuthSettings

    async def handler(request: object) -> JSONResponse:
        await asyncio.sleep(0.2)
        return JSONResponse({"queued": admission_module.queued_since_arrival()})

    app = RequireKey(Starlette(routes=[Route("/x", handler)]), make_authenticator(AuthSettings(), ""))
    queued = TestClient(app).get("/x").json()["queued"]
    assert 0.2 <= queued < 1.0


def test_the_grpc_policy_marks_a_calls_arrival_from_its_declared_timeout() -> None:
    # A step call that declares 30 s but arrives with 25 s left spent 5 s before its handler: slot() counts that.
    import grpc

    from toolfabric_server.gateway.policy.authentication import make_authenticator
    from toolfabric_server.gateway.policy.grpc import PolicyInterceptor
    from toolfabric_server.gateway.settings import AuthSettings

    async def main() -> float:
        seen: list[float] = []

        async def step(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            seen.append(admission_module.queued_since_arrival())
            return b""

        server = grpc.aio.server(interceptors=[PolicyInterceptor(make_authenticator(AuthSettings(), ""))])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "toolfabric.v1.Fabric", {"Step": grpc.unary_unary_rpc_method_handler(step)})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/toolfabric.v1.Fabric/Step")
                await call(b"", timeout=25, metadata=((CALL_TIMEOUT_KEY, "30000"),))
        finally:
            await server.stop(0)
        return seen[0]

    assert 4.9 <= asyncio.run(main()) < 6.0


def test_admission_admits_waiters_in_arrival_order() -> None:
    async def main() -> None:
        admission = Admission(max_running=2, queue=10, wait_s=5.0)
        order: list[int] = []

        async def one(i: int) -> None:
            async with admission.slot():
                order.append(i)
                await asyncio.sleep(0.02)

        tasks = []
        for i in range(8):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0.001)  # arrive one after the other
        await asyncio.gather(*tasks)
        assert order == list(range(8))
        assert admission.running == 0 and admission.waiting == 0

    asyncio.run(main())


def test_admission_grows_while_the_loop_keeps_up_and_stops_while_it_lags() -> None:
    # A thousand Runs admitted at once starve the gateway's event loop (issue 24, target 5): with a lag bound the
    # slots start at `min_running` and grow only while the loop keeps up.
    async def main() -> None:
        admission = Admission(max_running=100, queue=100, wait_s=5.0, max_lag_s=0.05, min_running=2)
        release = asyncio.Event()
        admitted: list[int] = []

        async def one(i: int) -> None:
            async with admission.slot():
                admitted.append(i)
                await release.wait()

        tasks = [asyncio.create_task(one(i)) for i in range(10)]
        await asyncio.sleep(0.01)
        assert len(admitted) == 2 and admission.waiting == 8  # the floor at once, the rest wait
        await asyncio.sleep(0.45)  # ~4 ticks of a loop that keeps up: ~one more each
        grown = len(admitted)
        assert 4 <= grown <= 8, grown
        assert admitted == sorted(admitted)  # in arrival order
        time.sleep(0.3)  # noqa: ASYNC251 - the loop stalls on purpose (a busy gateway): the next sample sees it
        await asyncio.sleep(0.01)
        assert admission.lag_s > 0.05
        assert len(admitted) == grown and admission.limit <= grown
        await asyncio.sleep(0.35)  # keeping up again: it grows again
        assert len(admitted) > grown
        release.set()
        await asyncio.gather(*tasks)
        assert sorted(admitted) == list(range(10)) and admission.running == 0

    asyncio.run(main())


def test_a_burst_the_loop_can_carry_is_admitted_within_the_admission_wait() -> None:
    # The slots grow by a quarter a tick: with the defaults (16 up to 600) a burst of 600 Runs on a gateway whose
    # loop keeps up is running within a few seconds, well inside the 20 s admission wait (one slot a tick: a minute).
    async def main() -> None:
        admission = Admission(max_running=600, queue=1000, wait_s=20.0, max_lag_s=0.25, min_running=16)
        release, all_in = asyncio.Event(), asyncio.Event()
        admitted: list[int] = []

        async def one(i: int) -> None:
            async with admission.slot():
                admitted.append(i)
                if len(admitted) == 600:
                    all_in.set()
                await release.wait()

        tasks = [asyncio.create_task(one(i)) for i in range(700)]
        await asyncio.sleep(0.01)
        assert len(admitted) == 16
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 8.0)
        assert len(admitted) == 600 and admission.waiting == 100, (len(admitted), admission.limit, admission.lag_s)
        release.set()
        await asyncio.gather(*tasks)
        assert admission.running == 0

    asyncio.run(main())


def test_a_refusals_retry_hint_is_how_long_the_queue_ahead_takes_to_drain() -> None:
    async def main() -> None:
        admission = Admission(max_running=1, queue=2, wait_s=0.1)
        async with admission.slot():
            await asyncio.sleep(0.5)  # slots are held ~0.5 s
        holders = [asyncio.create_task(_hold(admission, 3.0)) for _ in range(3)]  # one runs, two wait
        await asyncio.sleep(0.01)
        with pytest.raises(AdmissionRefused) as full:
            async with admission.slot():
                pass
        # Three ahead (two waiting and this one) at ~0.5 s each through one slot: ~1.5 s, not a fixed guess.
        assert full.value.retry_after_s == pytest.approx(1.5, abs=0.3)
        assert f"retry in {full.value.retry_after_s:g}s" in str(full.value)
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)

    asyncio.run(main())


async def _hold(admission: Admission, seconds: float) -> None:
    async with admission.slot():
        await asyncio.sleep(seconds)
