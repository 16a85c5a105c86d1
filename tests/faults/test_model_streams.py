"""Model steps beyond TOOLFABRIC_MODEL_MAX_STREAMS wait in the gateway for a slot, not against the idle timeout.

Issue 24: a thousand trajectories' steps streamed at once sat silent in Triton's queue past the idle timeout and
failed as model faults. Here one stream at a time, each step streaming for longer than the idle timeout: the second
trajectory's step waits for the first to finish, then completes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.conftest import FAST, script
from tests.model_repository import triton_with_test_models
from toolfabric import Client
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration

IDLE_S = 3.0
# One model step of 9 chunks 0.5 s apart: about 4.5 s, longer than the idle timeout.
STEP = {"text": "<answer>one two three four five six seven</answer>", "chunk_delay_s": 0.5}


def test_steps_beyond_max_streams_wait_for_a_slot_and_complete(tmp_path: Path) -> None:
    env = FAST | {"TOOLFABRIC_MODEL_MAX_STREAMS": "1", "TOOLFABRIC_MODEL_STREAM_IDLE_TIMEOUT_S": str(IDLE_S)}
    with EmbeddedStack(tmp_path, demo_site=False, extra_env=env, worker_concurrency=1,
                       triton=triton_with_test_models(tmp_path)) as stack:
        clients = [Client(stack.target, timeout_s=120) for _ in range(2)]
        try:
            alone = time.monotonic()
            assert clients[0].ask(script(STEP), model="toolfabric_scripted").status == "STATUS_COMPLETED"
            alone = time.monotonic() - alone
            started = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda c: c.ask(script(STEP), model="toolfabric_scripted"), clients))
            together = time.monotonic() - started
        finally:
            for client in clients:
                client.close()
    assert [r.status for r in results] == ["STATUS_COMPLETED"] * 2, [r.reason for r in results]
    assert alone > IDLE_S  # so the second step's wait for the slot outlasted the idle timeout
    assert together >= 1.8 * alone, f"two steps took {together:.1f}s, one alone {alone:.1f}s: not one at a time"
