"""The decode budget: what one request may make the gateway decode, refused from headers before decoding.

The small TIFF of issue 21 (1,313 bytes declaring 23 x 1,376,273 px, under the 40 Mpx limit) once took
6.6 s and 1.6 GB to decode; it is refused now from its header, naming the limit.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aredis
from PIL import Image

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common import images
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.errors import InvalidImage
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.gateway.validation import RequestValidator
from toolfabric_server.model.settings import ModelSettings

SMALL_TIFF = Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "images" / \
    "b54328fc5585367c0437dad0898300d8666e6ce4"


def blank_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 255).save(buf, "PNG")
    return buf.getvalue()


async def no_downloads(url: str, max_bytes: int) -> bytes:
    raise AssertionError("these tests download nothing")


@pytest.fixture
async def blobs(redis_server: RedisServer) -> AsyncIterator[AsyncBlobStore]:
    client = aredis.Redis.from_url(redis_server.url)
    yield AsyncBlobStore(client, 60)
    await client.aclose()


def validator(blobs: AsyncBlobStore, **gateway: object) -> RequestValidator:
    return RequestValidator(GatewaySettings(**gateway), ModelSettings(), CommonSettings(), blobs,  # type: ignore[arg-type]
                            no_downloads, catalog())


def request(*data: bytes) -> pb.RunRequest:
    return pb.RunRequest(question="What is this?", images=[pb.ImageInput(data=d) for d in data])


def test_the_small_tiff_is_refused_from_its_header_naming_the_limit() -> None:
    data = SMALL_TIFF.read_bytes()
    assert len(data) == 1313
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match=r"23x1376273 = 31654279 pixels in only 1313 bytes .*"
                                           r"TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE; checked before decoding"):
        images.decode_bgr(data, 40_000_000)  # the workers' entry point refuses it the same way
    assert time.perf_counter() - started < 0.5  # a header read, not a 6.6 s decode


def test_ordinary_images_pass_the_density_check() -> None:
    for size in ((4000, 4000), (20000, 3), (1, 1)):
        images.inspect(blank_png(*size), 40_000_000)  # a blank 16 Mpx PNG is ~760 pixels per byte


async def test_the_small_tiff_in_a_run_is_an_invalid_argument(blobs: AsyncBlobStore) -> None:
    with pytest.raises(InvalidRequest, match=r"^image 1: .*TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE"):
        await validator(blobs).validate(request(SMALL_TIFF.read_bytes()))


async def test_the_images_of_one_request_share_one_pixel_budget(blobs: AsyncBlobStore) -> None:
    five = blank_png(2500, 2000)  # 5 Mpx each, each well under the per-image limit
    checked = validator(blobs, max_decode_pixels_per_request=12_000_000)
    spec = await checked.validate(request(five, five))
    assert len(spec.inputs) == 2
    with pytest.raises(InvalidRequest, match=r"image 3: its 5000000 pixels bring the request's images to 15000000 "
                                             r"pixels, over the decode budget of 12000000 pixels per request "
                                             r"\(TOOLFABRIC_GATEWAY_MAX_DECODE_PIXELS_PER_REQUEST\)"):
        await checked.validate(request(five, five, five))


async def test_decode_time_is_bounded_and_a_slow_decode_keeps_its_slot(blobs: AsyncBlobStore) -> None:
    big = blank_png(4000, 4000)  # 16 Mpx: a real decode takes far longer than the 1 ms allowed here
    checked = validator(blobs, decode_timeout_s=0.001, decode_concurrency=1)
    first = asyncio.create_task(checked.validate(request(big)))
    with pytest.raises(InvalidRequest, match=r"image 1: (decoding took longer than 0.001s|no decoder became free)"
                                             r".*TOOLFABRIC_GATEWAY_DECODE_TIMEOUT_S"):
        await first
    # The decoder thread still runs and holds the only slot: the next request is refused, not queued forever.
    with pytest.raises(InvalidRequest, match=r"no decoder became free within 0\.001s"):
        await checked.validate(request(big))
