"""Calls sent several to a Celery message (common/batches.py) through a real worker: each call keeps its own
result, cancellation and resend; a batch delivered again skips the calls it finished and runs none of them twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from tests.support.plugin_dist import env_with, write_dist
from toolfabric_server.common import settings
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.consumers import LiveConsumers
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.devstack.processes import Child, wait_until
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.ports import ToolInvocation
from toolfabric_server.gateway.celery_executor import CeleryToolExecutor

pytestmark = pytest.mark.integration
HEARTBEAT_TTL_S = 2.0


class Worker:
    """The `batchy` plugin's worker (one pool process), restartable; counts each call's runs."""

    def __init__(self, redis_url: str, site: Path, workdir: Path) -> None:
        self.runs_file = workdir / "runs.txt"
        self.env = env_with(site) | {"TOOLFABRIC_REDIS_URL": redis_url, "TOOLFABRIC_WORKER_CONCURRENCY": "1",
                                     "TOOLFABRIC_WORKER_HEARTBEAT_INTERVAL_S": "0.5",
                                     "TOOLFABRIC_WORKER_HEARTBEAT_TTL_S": str(HEARTBEAT_TTL_S),
                                     "TOOLFABRIC_TEST_RUNS_FILE": str(self.runs_file)}
        self.workdir, self.redis_url = workdir, redis_url
        self.child: Child | None = None
        self.start()

    def start(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            before = set(client.zrange("toolfabric:consumers:batchy", 0, -1))
            self.child = Child("worker-batchy", [sys.executable, "-m", "toolfabric.cli.main", "worker", "batchy"],
                               self.workdir, env=self.env)
            wait_until(lambda: bool(set(client.zrange("toolfabric:consumers:batchy", 0, -1)) - before), 60,
                       "the batchy worker", self.child.proc, self.child.log)
        finally:
            client.close()

    def kill(self) -> None:
        assert self.child is not None
        os.killpg(self.child.proc.pid, signal.SIGKILL)
        self.child.stop()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def runs(self) -> Counter[str]:
        return Counter(self.runs_file.read_text().split()) if self.runs_file.exists() else Counter()


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    site = write_dist(tmp_path_factory.mktemp("site"), "sample_batchy",
                      {"batchy": "tests.support.sample_plugins.batchy:PLUGIN"})
    worker = Worker(redis_server.url, site, tmp_path_factory.mktemp("batchy-worker"))
    try:
        yield worker
    finally:
        worker.stop()


class Spy(CeleryToolExecutor):
    """The executor, noting the size of every batch it sends."""

    batches: list[int]

    def _send_batch(self, service: str, calls: list) -> str:  # type: ignore[type-arg]
        self.batches.append(len(calls))
        return super()._send_batch(service, calls)


@pytest.fixture
async def executor(redis_server: RedisServer, worker: Worker) -> AsyncIterator[Spy]:
    client = aredis.Redis.from_url(redis_server.url)
    app = make_celery(settings.common(), settings.worker())
    # The worker's liveness remembered for a while: calls started together reach the publish together.
    executor = Spy(app, client, LiveConsumers(client, HEARTBEAT_TTL_S, remember_s=10),
                   calls_per_message={"batchy": 16}, retry_consumer_wait_s=60)
    await executor.start()
    executor.batches = []
    try:
        assert (await executor.call(nap("warm-up"))).ok
        assert executor.batches == []  # a lone call goes alone
        yield executor
    finally:
        await executor.close()
        app.close()
        await client.aclose()


def nap(call_id: str, seconds: float = 0.0, then: str = "", timeout_s: float = 60) -> ToolInvocation:
    return ToolInvocation("batchy", "nap", {"seconds": seconds, "then": then},
                          ToolContext(trajectory_id="t", call_id=call_id), timeout_s)


async def test_each_call_of_a_batch_gets_its_own_result(executor: Spy, worker: Worker) -> None:
    ids = [f"own-{i}" for i in range(8)]
    results = await asyncio.gather(*(executor.call(nap(i, then="raise" if i == "own-3" else "")) for i in ids))
    assert executor.batches == [8]  # sent together: they were waiting for the same publish
    for call_id, result in zip(ids, results, strict=True):
        if call_id == "own-3":  # the one that raised fails alone
            assert not result.ok and result.error_kind == "internal" and "asked to fail" in result.text, result
        else:
            assert result.ok and result.text.startswith(f"{call_id} done"), result
    assert all(worker.runs()[i] == 1 for i in ids)


async def test_calls_do_not_subscribe_to_celerys_result_channels(executor: Spy, redis_server: RedisServer) -> None:
    # Results come back on the executor's reply list (common/reply_lists.py): Celery's own SUBSCRIBE at each send
    # (and UNSUBSCRIBE when the AsyncResult is collected) would be two Redis commands per call for nothing.
    client = redis.Redis.from_url(redis_server.url)

    def subscribes() -> int:
        return int(client.info("commandstats").get("cmdstat_subscribe", {}).get("calls", 0))

    try:
        before = subscribes()
        alone = await executor.call(nap("sub-alone"))
        together = await asyncio.gather(*(executor.call(nap(f"sub-{i}")) for i in range(8)))
        assert alone.ok and all(r.ok for r in together), (alone, together)
        assert subscribes() == before
    finally:
        client.close()


async def test_calls_beyond_the_messages_in_flight_wait_and_go_together(executor: Spy, worker: Worker) -> None:
    ids = [f"many-{i}" for i in range(120)]
    results = await asyncio.wait_for(asyncio.gather(*(executor.call(nap(i)) for i in ids)), 60)
    assert all(r.ok and r.text.startswith(f"{i} done") for i, r in zip(ids, results, strict=True)), results
    # 120 calls in at most 4 messages at a time of at most 16 calls: few messages, every call run once.
    assert max(executor.batches) == 16 and sum(executor.batches) >= 100, executor.batches
    runs = worker.runs()
    assert all(runs[i] == 1 for i in ids), runs


async def test_cancelling_a_running_call_of_a_batch_leaves_the_others_their_results(
        executor: Spy, worker: Worker) -> None:
    ids = ["cancel-slow", "cancel-a", "cancel-b"]
    tasks = [asyncio.create_task(executor.call(nap(i, seconds=20 if i == "cancel-slow" else 0))) for i in ids]
    await asyncio.to_thread(wait_until, lambda: worker.runs()["cancel-slow"] == 1, 20, "the slow call to run")
    tasks[0].cancel()
    others = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 30)  # not after the slow call's 20 s
    assert executor.batches[0] == 3
    assert all(isinstance(r, ToolResult) and r.ok for r in others), others
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    # The slow call was killed with its batch's pool process, and runs no more; the others ran once each.
    await asyncio.sleep(1)
    runs = worker.runs()
    assert runs["cancel-slow"] == 1 and runs["cancel-a"] == 1 and runs["cancel-b"] == 1, runs


async def test_a_batch_whose_pool_process_died_runs_only_its_unfinished_calls_again(
        executor: Spy, worker: Worker) -> None:
    ids = ["exit-a", "exit-b", "exit-c", "exit-dies"]
    # Not sub-millisecond: each result is stored as soon as its call is done (quicker ones are pushed a few at a
    # time, common/worker.py, and a pool process dying within those 2 ms would run them again).
    results = await asyncio.wait_for(asyncio.gather(
        *(executor.call(nap(i, seconds=0.005, then="exit once" if i == "exit-dies" else "")) for i in ids)), 60)
    assert executor.batches == [4]
    assert all(r.ok for r in results), results
    # Delivered again after its pool process died: the calls it finished are not run twice.
    runs = worker.runs()
    assert [runs[i] for i in ids] == [1, 1, 1, 2], runs
    assert results[3].attempts == 2 and results[0].attempts == 1


async def test_calls_of_a_batch_whose_worker_died_are_sent_again_and_finished_ones_kept(
        executor: Spy, worker: Worker) -> None:
    ids = ["dead-a", "dead-b", "dead-slow", "dead-c"]
    # The quick ones not sub-millisecond, so each result is stored before the next call starts (a sub-millisecond
    # result waits up to 2 ms to be pushed with the next ones, and one the worker's death catches runs again).
    tasks = [asyncio.create_task(executor.call(nap(i, seconds=30 if i == "dead-slow" else 0.005))) for i in ids]
    await asyncio.to_thread(wait_until, lambda: worker.runs()["dead-slow"] == 1, 20, "the slow call to run")
    await asyncio.to_thread(worker.kill)
    # In this thread, not a pool thread: a child is SIGTERMed when the thread that started it ends
    # (devstack/processes.py), so a worker started in `to_thread` died with the test's event loop.
    worker.start()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 90)
    assert all(r.ok for r in results), results
    runs = worker.runs()
    # Finished before the worker died: kept, not run again; the running one and the one after it ran again.
    assert [runs[i] for i in ids] == [1, 1, 2, 1], runs
    assert results[2].attempts == 2 and results[0].attempts == 1

