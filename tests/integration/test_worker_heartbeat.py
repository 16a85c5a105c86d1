"""A worker's heartbeat file stays fresh while it consumes, and goes stale when the broker is gone."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from toolfabric_server.devstack.processes import Child, wait_until
from toolfabric_server.devstack.redis_server import RedisServer

pytestmark = pytest.mark.integration


def age(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def test_heartbeat_is_fresh_while_consuming_and_stale_without_a_broker(tmp_path: Path) -> None:
    beat = tmp_path / "beat" / "heartbeat"
    redis = RedisServer(tmp_path / "redis").start()
    env = dict(os.environ) | {"TOOLFABRIC_REDIS_URL": redis.url, "TOOLFABRIC_WORKER_HEARTBEAT_FILE": str(beat),
                              "TOOLFABRIC_WORKER_HEARTBEAT_INTERVAL_S": "0.3", "TOOLFABRIC_WORKER_CONCURRENCY": "1"}
    worker = Child("worker", [sys.executable, "-m", "toolfabric.cli.main", "worker", "fetch"], tmp_path, env=env)
    try:
        wait_until(beat.exists, 60, "heartbeat file", worker.proc, worker.log)
        time.sleep(1.5)
        assert age(beat) < 1.0  # refreshed every 0.3 s
        redis.stop()
        time.sleep(3)
        assert age(beat) > 2.0  # consumer stopped with the broker: the probe would fail
        assert worker.alive()
    finally:
        worker.stop()
        redis.stop()
