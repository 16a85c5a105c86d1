"""Fixtures of the vision tests: real Redis blobs, a real sandbox zygote, test images."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from PIL import Image

from toolfabric_server.common import images
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.celery_app import make_celery
from toolfabric_server.common.settings import CommonSettings, WorkerSettings
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.common.worker import register_service
from toolfabric_server.tools.vision.sandbox.client import Sandbox
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.tools.vision.spec import TOOLS
from toolfabric_server.tools.vision.store import ImageStore, Vision
from toolfabric_server.tools.vision.tasks import bound

MAX_PIXELS = 40_000_000


def scene(width: int = 640, height: int = 480) -> np.ndarray:
    """A BGR test picture whose regions are easy to recognise: blue left half, red square, text."""
    img = np.full((height, width, 3), 255, np.uint8)
    img[:, : width // 2] = (255, 0, 0)
    cv2.rectangle(img, (width // 2 + 20, 20), (width // 2 + 120, 120), (0, 0, 255), -1)
    cv2.putText(img, "TOOLFABRIC", (20, height - 30), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    return img


def png(bgr: np.ndarray) -> bytes:
    return images.encode_png(bgr)


def jpeg(bgr: np.ndarray, quality: int = 92, exif_orientation: int | None = None) -> bytes:
    pil = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    buf = io.BytesIO()
    if exif_orientation is None:
        pil.save(buf, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        pil.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def blobs(redis_client: redis.Redis) -> BlobStore:
    return BlobStore(redis_client, 600)


@pytest.fixture
def store(blobs: BlobStore) -> ImageStore:
    return ImageStore(blobs, MAX_PIXELS, 20 * 1024 * 1024, 64 * 1024 * 1024)


@dataclass
class Worker:
    """The vision task as a worker registers it (on the test Redis), and the image store its handlers use."""

    call: Any
    store: ImageStore

    def run(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Exactly what a worker does with a message: the registered task, executed in-process."""
        return ToolResult.model_validate(self.call(tool, arguments, ctx.model_dump()))


@pytest.fixture(scope="session")
def worker(redis_server: object) -> Worker:
    """The vision task registered with the settings of the environment (the test Redis), as a worker does; one
    for the session, as a worker process keeps its store (and the thread following erasures) for its life."""
    common = CommonSettings()
    vision = Vision(common, VisionSettings())
    call = register_service(make_celery(common, WorkerSettings()), "vision", TOOLS, bound(vision), common)
    return Worker(call, vision.store)


MakeContext = Callable[..., ToolContext]


@pytest.fixture
def context(blobs: BlobStore) -> MakeContext:
    """context({"<image 1>": bytes, …}) → a ToolContext whose images are in the blob store."""

    def make(named: dict[str, bytes] | None = None) -> ToolContext:
        refs = {name: blobs.put(data) for name, data in (named or {}).items()}
        return ToolContext(trajectory_id="t-test", call_id="c-test", images=refs)

    return make


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    box.start()
    yield box
    box.close()


@pytest.fixture
def sandbox_settings() -> VisionSettings:
    """Tight limits so hostile code is stopped quickly (call directories in the system temp dir)."""
    return VisionSettings(
        sandbox_wall_s=3.0, sandbox_cpu_s=2, sandbox_memory_mb=256, sandbox_file_size_mb=4,
        sandbox_max_processes=8, sandbox_output_chars=400, max_output_images=3,
    )
