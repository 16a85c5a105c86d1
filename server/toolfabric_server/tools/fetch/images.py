"""Images from the web into the trajectory: fetched through the guard, checked, stored as blobs."""

from __future__ import annotations

from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.errors import InvalidImage
from toolfabric_server.common.images import PIXELS_PER_BYTE, ImageInfo, inspect
from toolfabric_server.common.tools import NewImage
from toolfabric_server.web.decoding import IMAGE_TYPES
from toolfabric_server.web.errors import UndecodableContent
from toolfabric_server.web.fetcher import Fetcher


async def image_bytes(fetcher: Fetcher, url: str, max_bytes: int, max_pixels: int,
                      max_pixels_per_byte: int = PIXELS_PER_BYTE) -> tuple[bytes, str]:
    """Bytes of an image URL, validated as an accepted image type within the pixel limit."""
    fetched = await fetcher.fetch(url, IMAGE_TYPES, max_bytes)
    data = fetched.body
    check_image(data, fetched.final_url, max_pixels, max_pixels_per_byte)
    return data, fetched.final_url


def check_image(data: bytes, url: str, max_pixels: int, max_pixels_per_byte: int = PIXELS_PER_BYTE) -> ImageInfo:
    """Header facts of an image, or UndecodableContent saying why the bytes are not a usable image."""
    try:
        return inspect(data, max_pixels, max_pixels_per_byte)
    except InvalidImage as exc:
        raise UndecodableContent(f"{url} is not a usable image: {exc}") from None


async def store_image(blobs: AsyncBlobStore, data: bytes, origin: str, max_pixels: int,
                      max_pixels_per_byte: int = PIXELS_PER_BYTE) -> NewImage:
    """Put an image into the blob store; the gateway names it `<sub-image N>`."""
    info = check_image(data, origin, max_pixels, max_pixels_per_byte)
    ref = await blobs.put(data)
    return NewImage(ref=ref, width=info.width, height=info.height, origin=origin, mime_type=info.mime_type)
