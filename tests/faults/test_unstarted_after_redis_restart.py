"""Calls a worker had taken but not started when Redis restarted finish in seconds, not at the tool timeout.

A worker that loses its broker drops the messages it reserved and kombu pushes them back to their queue; when
the broker is what went away that push fails and, before, the messages stayed in `unacked` for the visibility
timeout while the worker lived on (so the gateway's dead-holder check never fired): each caught call waited out
the 60 s tool timeout. The worker now gives them back once it is connected again (common/unacked.py).

Its own stack: one vision worker process running one call at a time that reserves three more (prefetch 4), so
Redis restarts with one call running and three taken but unstarted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.faults.conftest import FAST, code_call
from toolfabric import Client
from toolfabric_server.devstack.processes import wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
CALLS = 4
TOOL_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def prefetching_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    env = FAST | {"TOOLFABRIC_WORKER_PREFETCH_MULTIPLIER": str(CALLS),
                  "TOOLFABRIC_GATEWAY_TOOL_TIMEOUT_S": str(TOOL_TIMEOUT_S)}
    with EmbeddedStack(tmp_path_factory.mktemp("prefetch-stack"), demo_site=False, extra_env=env,
                       worker_concurrency=1) as stack:
        yield stack


def test_calls_taken_unstarted_when_redis_restarts_finish_in_seconds(prefetching_stack: EmbeddedStack) -> None:
    stack = prefetching_stack
    broker = redis.Redis.from_url(stack.redis.url)
    ids = [f"caught-{i}-{time.time_ns()}" for i in range(CALLS)]
    actions = [code_call(f"import time\ntime.sleep(1.5)\nprint('done {i}')") for i in range(CALLS)]
    restarted_at = 0.0
    try:
        with Client(stack.target, timeout_s=3 * TOOL_TIMEOUT_S) as client:
            client.step(["warm-up"], [code_call("print(1)")])  # the worker is up and consuming
            answers: list[object] = []
            step = threading.Thread(target=lambda: answers.append(client.step(ids, actions)))
            step.start()
            # One call running, the other three reserved by the worker: all four in `unacked`.
            wait_until(lambda: broker.hlen("unacked") >= CALLS, 30, "the worker to take every call")
            time.sleep(1.2)  # appendfsync everysec: the `unacked` entries are on disk
            stack.redis.stop()  # SIGTERM: the worker loses its broker and cannot give its messages back
            time.sleep(1.0)
            stack.redis.start()  # same port, same data: the messages are still in `unacked`
            restarted_at = time.monotonic()
            step.join(3 * TOOL_TIMEOUT_S)
            caught_s = time.monotonic() - restarted_at
            [observations] = answers
            texts = [o.text for o in observations]  # type: ignore[attr-defined]
            assert all(f"done {i}" in text for i, text in enumerate(texts)), texts
            # Serially 4 x 1.5 s of work plus the worker's reconnect: seconds, not the 60 s tool timeout.
            assert caught_s < 25, f"the caught calls finished {caught_s:.1f}s after Redis was back"
            started = time.monotonic()
            [after] = client.step(["after-restart"], [code_call("print('next')")])
            next_s = time.monotonic() - started
            assert "next" in after.text and next_s < 10, (after.text, next_s)
            print(f"\n[faults] {CALLS} calls caught by a Redis restart (1 running, {CALLS - 1} taken unstarted): "
                  f"all done {caught_s:.1f}s after Redis was back; the next call took {next_s:.1f}s")
    finally:
        broker.close()
