"""Production's Redis split by role (issue 22, item 6), on real redis-servers: image blobs and the hot cache in a
bounded, evicting (LRU) Redis of their own (TOOLFABRIC_CACHE_REDIS_URL); the broker and trajectory state in the
durable, `noeviction` one. Filling the cache Redis to its limit evicts only cache entries: runs, tool calls and
their records carry on, and nothing in the broker's Redis is evicted.

The stack of this module also starts with its HTTP port taken by someone else first (a port chosen free is not
free for long on a busy machine): it must choose new ports and come up anyway."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator

import httpx
import pytest
import redis
from PIL import Image

from tests.faults.conftest import FAST, code_call, script
from tests.model_repository import triton_with_test_models
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
CACHE_MB = 16


@pytest.fixture(scope="module")
def split_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedStack, int]]:
    workdir = tmp_path_factory.mktemp("split-stack")
    stack = EmbeddedStack(workdir, demo_site=False, extra_env=FAST, worker_concurrency=1, cache_redis_mb=CACHE_MB,
                          triton=triton_with_test_models(workdir))
    taken = stack.http_port
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", taken))  # another process got there between choosing and binding
    squatter.listen()
    try:
        with stack:
            yield stack, taken
    finally:
        squatter.close()


def _evicted(client: redis.Redis) -> int:
    return int(client.info("stats")["evicted_keys"])


def test_full_cache_redis_evicts_while_broker_and_trajectories_carry_on(
        split_stack: tuple[EmbeddedStack, int]) -> None:
    stack, _ = split_stack
    assert stack.cache_redis is not None
    state, cache = redis.Redis.from_url(stack.redis.url), redis.Redis.from_url(stack.cache_redis.url)
    try:
        # Three times the cache's limit of image-sized blobs: every write succeeds, the oldest are evicted.
        for i in range(3 * CACHE_MB):
            cache.set(f"filler:{i}", os.urandom(1024 * 1024), ex=3600)
        assert _evicted(cache) > 0
        image = io.BytesIO()
        Image.new("RGB", (96, 64), (200, 30, 30)).save(image, format="PNG")
        with Client(stack.target, timeout_s=120) as client:
            results = [client.ask(script(code_call(f"print({n} * 7)"), "<answer>done</answer>"),
                                  images=[image.getvalue()], model="toolfabric_scripted") for n in range(3)]
            for n, result in enumerate(results):
                assert result.status == "STATUS_COMPLETED", result.reason
                [obs] = result.observations
                assert not obs.is_error and str(n * 7) in obs.text, obs.text
                record = client.trajectory(result.trajectory_id)  # the record, from the state Redis
                assert record.status == pb.STATUS_COMPLETED
        # The image went to the cache Redis (and is there, recently used), the records to the state Redis, and
        # the state Redis — broker, results, trajectories — lost nothing to eviction.
        assert cache.keys("toolfabric:blob:[0-9a-f]*")
        assert not state.keys("toolfabric:blob:*")
        assert all(state.exists(f"toolfabric:trajectory:{r.trajectory_id}") for r in results)
        assert _evicted(state) == 0
        assert state.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        state.close()
        cache.close()


def test_stack_chooses_new_gateway_ports_when_one_was_taken_first(split_stack: tuple[EmbeddedStack, int]) -> None:
    stack, taken = split_stack
    assert stack.http_port != taken
    assert httpx.get(f"{stack.http_url}/healthz", timeout=5).status_code == 200
    assert (stack.workdir / "logs" / "gateway.port-taken-1.log").exists()
