"""Limits say what they are: a full gateway answers RESOURCE_EXHAUSTED with a retry hint, an exhausted Redis pool
names its setting, and a port taken between choosing and binding is chosen again."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from tests.faults.conftest import gateway_process, script
from toolfabric import Client, ResourceExhausted
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.gateway.connections import PoolExhausted, redis_client
from toolfabric_server.gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration
SLOW = {"text": "<think>" + "wait " * 400 + "</think><answer>done</answer>", "chunk_delay_s": 0.01}


def test_full_gateway_refuses_at_once_with_resource_exhausted_and_a_retry_hint(
        fault_stack: EmbeddedStack, tmp_path: Path) -> None:
    with gateway_process(fault_stack, tmp_path, TOOLFABRIC_GATEWAY_MAX_RUNNING="1",
                         TOOLFABRIC_GATEWAY_ADMISSION_QUEUE="0") as (target, _), \
            Client(target, timeout_s=60) as first, Client(target, timeout_s=60) as second:
        running = first.events(script(SLOW), model="toolfabric_scripted")
        next(running)  # the one slot is taken
        started = time.monotonic()
        with pytest.raises(ResourceExhausted, match="gateway busy: 1 trajectories running") as refused:
            second.ask(script("<answer>no</answer>"), model="toolfabric_scripted")
        assert time.monotonic() - started < 5  # at once, not a 30 s cancel
        assert refused.value.retry_after_s and refused.value.retry_after_s >= 1
        running.close()


def test_exhausted_redis_pool_fails_naming_the_setting(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis_client(redis_server.url, CommonSettings(),
                              GatewaySettings(redis_max_connections=4, redis_pool_timeout_s=0.3))
        try:
            holders = [asyncio.create_task(client.blpop([f"nothing-{i}"], timeout=2)) for i in range(4)]
            await asyncio.sleep(0.2)  # all four connections are blocked in BLPOP
            with pytest.raises(PoolExhausted, match=r"all 4 Redis connections .*TOOLFABRIC_GATEWAY_REDIS_MAX_CONN"):
                await client.get("x")
            await asyncio.gather(*holders)
            assert await client.get("x") is None  # connections back: it works again
        finally:
            await client.aclose()

    asyncio.run(main())


def test_port_taken_before_redis_binds_it_is_chosen_again(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", server.port))  # another process got there first
    squatter.listen()
    lost = server.port
    try:
        server.start()
        assert server.port != lost and server.alive()
    finally:
        server.stop()
        squatter.close()
