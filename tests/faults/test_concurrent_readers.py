"""Readers never crash the gateway: trajectories run while 60 clients list and fetch trajectories and images
in a loop, on a gateway storing into SQLite and into a real PostgreSQL — zero crashes, zero failed reads,
zero RUNNING leftovers.

Half the reads go to records Redis has forgotten (so they are served by the durable store from the
gateway's reader threads, where SQLAlchemy's SingletonThreadPool crashed the process with SIGSEGV in
libsqlite3), half to live ones (served from Redis without touching the store). The small version runs in
`make test`; the issue's 500 runs x 60 readers is `make soak`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.faults.conftest import gateway_process, script
from tests.store.events import png
from toolfabric import AsyncClient
from toolfabric.exceptions import ToolfabricError
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
READERS = 60
FORGOTTEN = 6  # runs whose Redis copies are deleted before the load: every read of them is a store read
RUNS_AT_ONCE = 100
SPREAD_S = 15.0


def _photo(i: int) -> bytes:
    return png((i % 256, i // 256 % 256, 90))  # one distinct image per run


def _forget(redis_url: str, results: list[pb.Trajectory]) -> None:
    """What Redis's TTLs do after 7 days (records) and 6 hours (images)."""
    client = redis.Redis.from_url(redis_url)
    for t in results:
        blobs = [i.blob for e in t.events if e.HasField("started") for i in e.started.images]
        client.delete(f"toolfabric:trajectory:{t.trajectory_id}", f"toolfabric:trajectory:{t.trajectory_id}:events",
                      *[f"toolfabric:blob:{b.removeprefix('sha256:')}" for b in blobs])
    client.close()


async def _load(target: str, suite: str, runs: int, redis_url: str) -> dict[str, object]:
    clients = [AsyncClient(target, timeout_s=120) for _ in range(READERS)]
    runner = AsyncClient(target, timeout_s=600)
    # ~2 s of streamed thinking per run, so that the readers read while many runs record and store events.
    step = lambda i: {"text": "<think>" + "reading " * 100 + f"</think><answer>run {i}</answer>",  # noqa: E731
                      "chunk_delay_s": 0.02}
    ask = lambda i: runner.ask(script(step(i)), images=[_photo(i)], model="toolfabric_scripted",  # noqa: E731
                               mode="general", max_steps=1, labels={"suite": suite})
    try:
        seeded = await asyncio.gather(*[ask(-1 - i) for i in range(FORGOTTEN)])
        forgotten = [await runner.trajectory(r.trajectory_id) for r in seeded]
        await _until_stored(runner, suite, FORGOTTEN)
        _forget(redis_url, forgotten)
        ids = [t.trajectory_id for t in forgotten]
        blobs = [i.blob for t in forgotten for e in t.events if e.HasField("started") for i in e.started.images]
        reads: Counter[str] = Counter()
        failures: list[str] = []
        running = True

        async def reader(n: int, client: AsyncClient) -> None:
            pick = random.Random(n)
            while running:
                try:
                    page = await client.list_trajectories(labels={"suite": suite}, page_size=50)
                    live = [s.trajectory_id for s in page.trajectories]
                    got = await client.trajectory(pick.choice(ids if n % 2 or not live else live))
                    assert got.events and dict(got.labels) == {"suite": suite}, got.trajectory_id
                    image = await client.image(pick.choice(blobs))
                    assert image.data and image.width == 8, image.blob
                    reads["cycles"] += 1
                except (ToolfabricError, AssertionError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.2)

        readers = [asyncio.create_task(reader(n, c)) for n, c in enumerate(clients)]
        limit = asyncio.Semaphore(RUNS_AT_ONCE)

        async def one(i: int) -> pb.Status.ValueType:
            await asyncio.sleep(i * SPREAD_S / runs)  # starts spread over SPREAD_S: reads overlap every phase
            async with limit:
                return pb.Status.Value((await ask(i)).status)

        started = time.monotonic()
        try:
            statuses = await asyncio.gather(*[one(i) for i in range(runs)], return_exceptions=True)
        finally:
            running = False
            await asyncio.gather(*readers)
        return {"statuses": statuses, "failures": failures, "reads": reads["cycles"],
                "seconds": time.monotonic() - started,
                "running": await _until_stored(runner, suite, FORGOTTEN + runs)}
    finally:
        for c in [runner, *clients]:
            await c.close()


async def _until_stored(client: AsyncClient, suite: str, count: int, timeout_s: float = 60) -> list[str]:
    """Waits until the store holds `count` ended trajectories of the suite; returns those still RUNNING."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [s async for s in client.iter_trajectories(labels={"suite": suite}, page_size=500)]
        running = [s.trajectory_id for s in found if s.status == pb.STATUS_RUNNING]
        if (len(found) >= count and not running) or time.monotonic() > deadline:
            return running + [f"missing {count - len(found)}"] * (len(found) < count)
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("runs", [pytest.param(30, id="30-runs"),
                                  pytest.param(500, id="500-runs", marks=pytest.mark.soak)])
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_sixty_readers_during_runs_crash_nothing(fault_stack: EmbeddedStack, request: pytest.FixtureRequest,
                                                 tmp_path: Path, dialect: str, runs: int) -> None:
    store = {"TOOLFABRIC_DATA_DIR": str(tmp_path / "data")}
    if dialect == "postgresql":
        store["TOOLFABRIC_STORE_URL"] = request.getfixturevalue("postgres_server").url
    suite = f"readers-{uuid.uuid4().hex[:8]}"
    with gateway_process(fault_stack, tmp_path, **store) as (target, gateway):
        try:
            outcome = asyncio.run(_load(target, suite, runs, fault_stack.redis.url))
        finally:  # a crash fails the clients too; say it was a crash
            assert gateway.alive(), f"the gateway died (exit {gateway.proc.returncode}); see {gateway.log}"
    print(f"{dialect}: {runs} runs in {outcome['seconds']:.1f}s with {READERS} readers: "
          f"{outcome['reads']} read cycles (list + get + image)")
    assert outcome["failures"] == [], (len(outcome["failures"]), outcome["failures"][:5])  # type: ignore[index]
    assert outcome["statuses"] == [pb.STATUS_COMPLETED] * runs
    assert outcome["running"] == []
    assert outcome["reads"] >= READERS  # type: ignore[operator]
