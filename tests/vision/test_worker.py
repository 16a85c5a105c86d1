"""A real vision worker process on real Redis, called the way the gateway calls it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.vision.conftest import jpeg, scene
from toolfabric_server.common import images, settings
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.tools import ToolResult, task_name
from toolfabric_server.devstack.processes import Child
from toolfabric_server.devstack.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    env = {**os.environ, "TOOLFABRIC_REDIS_URL": redis_server.url, "TOOLFABRIC_WORKER_CONCURRENCY": "1"}
    child = Child("vision-worker", [sys.executable, "-c",
                                    "from toolfabric_server.common.worker import run_worker; run_worker('vision')"],
                  tmp_path_factory.mktemp("vision-worker"), env=env, cwd=Path(__file__).resolve().parents[2])
    try:
        yield child
    finally:
        child.stop()


@pytest.fixture(scope="module")
def gateway_side(redis_server: RedisServer) -> Iterator[Celery]:
    """A Celery app on the test Redis (the shared `app` was bound to the default URL at import)."""
    app = make_celery(settings.common(), settings.worker())
    yield app
    app.close()


Call = Any


@pytest.fixture
def call(worker: Child, gateway_side: Celery) -> Call:
    def send(tool: str, arguments: dict[str, Any], images_: dict[str, str], timeout_s: float = 60) -> ToolResult:
        message = gateway_side.send_task(task_name("vision"), args=[tool, arguments, {"images": images_}],
                                         queue="vision")
        return ToolResult.model_validate(message.get(timeout=timeout_s))

    return send


def test_worker_runs_code_and_fixed_tools_on_blob_images(call: Call, blobs: BlobStore) -> None:
    ref = blobs.put(jpeg(scene()))
    result = call("code", {"code": "print(image.shape, sorted(images))\nsave(cv2.flip(image, 1), 'mirrored')"},
                  {"<image 1>": ref}, timeout_s=120)
    assert result.ok, result.text
    assert result.text.startswith("(480, 640, 3) ['<image 1>', '<image>']")
    [new] = result.images
    assert (new.width, new.height, new.origin) == (640, 480, "code output 1 (mirrored)")

    # A later tool works on the image the code produced, by the name the gateway gives it.
    cropped = call("crop", {"image": "<sub-image 1>", "bbox": [0, 0, 100, 100]},
                   {"<image 1>": ref, "<sub-image 1>": new.ref})
    assert cropped.ok and cropped.images[0].width == 100
    assert images.inspect(blobs.get(cropped.images[0].ref), 40_000_000).format == "PNG"


def test_worker_answers_hostile_code_with_an_error_and_keeps_serving(call: Call, worker: Child) -> None:
    failed = call("code", {"code": "import socket\nsocket.create_connection(('127.0.0.1', 6379))"}, {})
    assert not failed.ok and failed.error_kind == "code_error" and "Operation not permitted" in failed.text
    assert call("code", {"code": "sum(range(10))"}, {}).text == "45"
    assert worker.alive()
