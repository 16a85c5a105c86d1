"""For other processes (the gateway): download an image URL through the same SSRF guard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from toolfabric_server.web.decoding import IMAGE_TYPES
from toolfabric_server.web.fetcher import Fetcher
from toolfabric_server.web.guard import Resolver
from toolfabric_server.web.settings import FetchSettings


async def fetch_image_bytes(
    url: str,
    max_bytes: int,
    fetch_settings: FetchSettings,
    resolver: Resolver | None = None,
) -> bytes:
    """Bytes of the image at `url` (PNG, JPEG, GIF, WebP, BMP, TIFF), at most `max_bytes`.

    Goes through the guard (public addresses only unless allowlisted, pinned connect, each
    redirect re-checked). Raises a FetchError subclass from toolfabric_server.web.errors whose message
    says what went wrong (BlockedURL, HTTPStatusError, BodyTooLarge, UnsupportedContentType, …).
    The bytes are not decoded here; the caller validates them as an image.
    """
    async with Fetcher(fetch_settings, resolver) as fetcher:
        fetched = await fetcher.fetch(url, IMAGE_TYPES, max_bytes)
    return fetched.body


def image_downloader(fetch_settings: FetchSettings) -> Callable[[str, int], Awaitable[bytes]]:
    """`download(url, max_bytes)` through the guard `fetch_settings` configure (the gateway's image URLs)."""

    async def download(url: str, max_bytes: int) -> bytes:
        return await fetch_image_bytes(url, max_bytes, fetch_settings)

    return download
