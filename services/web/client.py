"""For other processes (the gateway): download an image URL through the same SSRF guard."""

from __future__ import annotations

from services.web import settings as web_settings
from services.web.decoding import IMAGE_TYPES
from services.web.fetcher import Fetcher
from services.web.guard import Resolver
from services.web.settings import FetchSettings


async def fetch_image_bytes(
    url: str,
    max_bytes: int,
    fetch_settings: FetchSettings | None = None,
    resolver: Resolver | None = None,
) -> bytes:
    """Bytes of the image at `url` (PNG, JPEG, GIF, WebP, BMP, TIFF), at most `max_bytes`.

    Goes through the guard (public addresses only unless allowlisted, pinned connect, each
    redirect re-checked). Raises a FetchError subclass from services.web.errors whose message
    says what went wrong (BlockedURL, HTTPStatusError, BodyTooLarge, UnsupportedContentType, …).
    The bytes are not decoded here; the caller validates them as an image.
    """
    cfg = fetch_settings or web_settings.fetch()
    async with Fetcher(cfg, resolver) as fetcher:
        fetched = await fetcher.fetch(url, IMAGE_TYPES, max_bytes)
    return fetched.body
