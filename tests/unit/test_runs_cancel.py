"""Cancelling a trajectory whose task has not begun yet (a client that goes away at once, a Cancel or a shutdown
that lands right after the Run started) still ends it: a `finished` event, its lease and its slot released.

asyncio never runs the coroutine of a task cancelled before its first step, so its own clean-up cannot do it.
The trajectory's world (the agent loop, the policy, the leases, the delivery) is faked in-process here.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.gateway.runs import Runs


class _Loop:
    def __init__(self) -> None:
        self.ran: list[str] = []

    async def run(self, spec: Any, emit: Any, checkpoint: Any, owner: Any) -> None:
        self.ran.append(spec.trajectory_id)
        await asyncio.sleep(3600)


class _Delivery:
    def __init__(self) -> None:
        self.finished: pb.TrajectoryFinished | None = None
        self.detached = False
        self.closed = False

    def event(self, **fields: Any) -> pb.RunEvent:
        return pb.RunEvent(**fields)

    async def emit(self, event: pb.RunEvent) -> None:
        if event.HasField("finished"):
            self.finished = event.finished

    async def fail(self, code: str, reason: str) -> None:
        await self.emit(self.event(finished=pb.TrajectoryFinished(status=pb.STATUS_FAILED, reason=reason)))

    def close(self) -> None:
        self.closed = True


class _Leases:
    owner = "gateway-test"

    def __init__(self) -> None:
        self.released: list[tuple[str, bool]] = []

    async def release(self, tid: str, finished: bool) -> None:
        self.released.append((tid, finished))


class _Limits:
    def __init__(self) -> None:
        self.released: list[str] = []

    async def release(self, principal: Any, tid: str) -> None:
        self.released.append(tid)


def _runs() -> Runs:
    runs = object.__new__(Runs)
    runs._running = {}
    runs._loop = _Loop()  # type: ignore[assignment]
    runs.leases = _Leases()  # type: ignore[assignment]
    runs.policy = SimpleNamespace(limits=_Limits(), observe=lambda *_: asyncio.sleep(0))  # type: ignore[assignment]
    return runs


SPEC: Any = SimpleNamespace(trajectory_id="t-1", tenant="")


async def test_a_trajectory_cancelled_before_its_first_step_still_ends_as_cancelled() -> None:
    runs = _runs()
    delivery = _Delivery()
    running = runs._start(SPEC, delivery)  # type: ignore[arg-type]
    assert runs.cancel_local("t-1")  # before the task has had a single step
    await asyncio.wait_for(asyncio.wait([running.task]), 5)
    assert delivery.finished is not None and delivery.finished.status == pb.STATUS_CANCELLED
    assert runs.leases.released == [("t-1", True)]  # type: ignore[attr-defined]
    assert runs.policy.limits.released == ["t-1"]  # type: ignore[attr-defined]
    assert delivery.closed and runs._running == {}
    assert runs._loop.ran == []  # type: ignore[attr-defined]


async def test_a_trajectory_handed_over_before_its_first_step_releases_its_lease_for_another_replica() -> None:
    runs = _runs()
    delivery = _Delivery()
    running = runs._start(SPEC, delivery)  # type: ignore[arg-type]
    delivery.detached = True  # what drain() does before cancelling
    running.cancel()
    await asyncio.wait_for(asyncio.wait([running.task]), 5)
    assert delivery.finished is None  # not ended here: another replica resumes it
    assert runs.leases.released == [("t-1", False)]  # type: ignore[attr-defined]


async def test_a_running_trajectory_is_cancelled_inside_the_loop() -> None:
    runs = _runs()
    delivery = _Delivery()
    running = runs._start(SPEC, delivery)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert runs._loop.ran == ["t-1"]  # type: ignore[attr-defined]
    assert runs.cancel_local("t-1")
    await asyncio.wait_for(asyncio.wait([running.task]), 5)
    assert delivery.finished is not None and delivery.finished.status == pb.STATUS_CANCELLED
    assert runs.leases.released == [("t-1", True)]  # type: ignore[attr-defined]
