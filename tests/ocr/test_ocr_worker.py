"""Plugin services through real worker processes: `toolfabric worker ocr` reading text in trajectory
images, a sample plugin's worker, and the CLI refusing a service nobody installed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from tests.support.executor import celery_executor
from tests.support.plugin_dist import declared_plugins, env_with, write_dist
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.devstack.processes import Child
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.ports import ToolInvocation
from toolfabric_server.gateway.celery_executor import CeleryToolExecutor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    write_dist(site, "toolfabric_declared", declared_plugins())
    return write_dist(site, "sample_echo", {"echo": "tests.support.sample_plugins.echo:PLUGIN",
                                            "broken": "tests.support.sample_plugins.broken:PLUGIN"})


@pytest.fixture(scope="module")
def workers(redis_server: RedisServer, site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    env = env_with(site) | {"TOOLFABRIC_REDIS_URL": redis_server.url, "TOOLFABRIC_WORKER_CONCURRENCY": "1"}
    logs = tmp_path_factory.mktemp("plugin-workers")
    children = [Child(f"worker-{name}", [sys.executable, "-m", "toolfabric.cli.main", "worker", name], logs, env=env)
                for name in ("ocr", "echo")]
    try:
        yield
    finally:
        for child in children:
            child.stop()


@pytest.fixture
async def executor(redis_server: RedisServer, workers: None) -> AsyncIterator[CeleryToolExecutor]:
    async with celery_executor(redis_server.url) as executor:
        yield executor


def sign(*lines: str) -> bytes:
    img = np.full((360, 720, 3), (40, 110, 30), np.uint8)  # a green street sign
    for i, line in enumerate(lines):
        cv2.putText(img, line, (40, 120 + 110 * i), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 5)
    ok, data = cv2.imencode(".jpg", img)
    assert ok
    return data.tobytes()


async def call(executor: CeleryToolExecutor, service: str, tool: str, arguments: dict[str, object],
               images: dict[str, str] | None = None) -> ToolResult:
    context = ToolContext(trajectory_id="t1", call_id="s1c1", images=images or {})
    return await executor.call(ToolInvocation(service, tool, arguments, context, timeout_s=90))


async def test_ocr_worker_reads_the_text_of_a_trajectory_image(executor: CeleryToolExecutor,
                                                               redis_client: redis.Redis) -> None:
    blobs = BlobStore(redis_client, 600)
    photo, sub = blobs.put(sign("ELM STREET")), blobs.put(sign("EXIT 42", "AIRPORT"))
    result = await call(executor, "ocr", "ocr", {"image": "<image 1>"}, {"<image 1>": photo, "<sub-image 1>": sub})
    assert result.ok, result.text
    assert "ELM STREET" in result.text and result.text.startswith("Text read in <image 1> (720x360)")
    [line] = result.data["lines"]
    x1, y1, x2, y2 = line["box"]
    assert 20 <= x1 < x2 <= 720 and 40 <= y1 < y2 <= 160  # where the text was drawn

    # Any image of the trajectory, by any of its names; the alias reads the same way.
    second = await call(executor, "ocr", "read_text", {"image_path": "sub-image 1"},
                        {"<image 1>": photo, "<sub-image 1>": sub})
    assert [line["text"] for line in second.data["lines"]] == ["EXIT 42", "AIRPORT"]
    assert second.usage["ocr_cache_hit"] == 0.0
    again = await call(executor, "ocr", "ocr", {"image": "<sub-image 1>"}, {"<sub-image 1>": sub})
    assert again.usage["ocr_cache_hit"] == 1.0 and again.data == second.data


async def test_ocr_errors_name_the_problem_and_the_worker_keeps_serving(executor: CeleryToolExecutor,
                                                                       redis_client: redis.Redis) -> None:
    photo = BlobStore(redis_client, 600).put(sign("OPEN"))
    unknown = await call(executor, "ocr", "ocr", {"image": "<image 2>"}, {"<image 1>": photo})
    assert (unknown.ok, unknown.error_kind) == (False, "unknown_image")
    assert "this trajectory has: <image 1>" in unknown.text
    lang = await call(executor, "ocr", "ocr", {"lang": "klingon"}, {"<image 1>": photo})
    assert (lang.ok, lang.error_kind) == (False, "invalid_argument") and "'klingon' is not available" in lang.text
    not_image = BlobStore(redis_client, 600).put(b"GIF89a not really")
    bad = await call(executor, "ocr", "ocr", {}, {"<image 1>": not_image})
    assert not bad.ok and "<image 1> cannot be read" in bad.text
    assert (await call(executor, "ocr", "ocr", {}, {"<image 1>": photo})).data["lines"][0]["text"] == "OPEN"


async def test_a_plugin_service_gets_its_own_queue_validation_and_crash_containment(
        executor: CeleryToolExecutor) -> None:
    loud = await call(executor, "echo", "shout", {"text": "hi"}, {"<image 1>": "sha256:" + "0" * 64})
    assert (loud.ok, loud.text) == (True, "HI! (1 images)")
    invalid = await call(executor, "echo", "shout", {"text": ""})
    assert invalid.error_kind == "invalid_argument" and "text: String should have at least 1 character" in invalid.text
    crashed = await call(executor, "echo", "shout", {"text": "crash"})
    assert crashed.error_kind == "internal" and "RuntimeError: the plugin's own bug" in crashed.text
    assert (await call(executor, "echo", "ping", {"payload": "still here"})).text == "still here"


def test_worker_for_an_unknown_service_lists_what_exists_and_why_a_plugin_is_missing(site: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "worker", "broken"], env=env_with(site),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no service 'broken'; available: vision, search, fetch, echo, ocr" in done.stderr
    assert "plugin 'broken' left out: importing tests.support.sample_plugins.broken:PLUGIN failed" in done.stderr
