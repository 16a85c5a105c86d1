"""The `ocr` handler: resolve the image, read it (cached by content), answer with lines and boxes.

Imported only by the ocr worker (toolfabric_server.tools.ocr.plugin names `handlers`, called once at its start).
Readings are cached in the shared hot tier keyed by the image's content hash and the options, so
every trajectory asking about the same photo shares one Tesseract run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aredis

from toolfabric_server.common import images, redis_clients
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.bridge import AsyncBridge, Closer
from toolfabric_server.common.cache import Cache, CacheEntry, cache_key
from toolfabric_server.common.errors import BlobNotFound, InvalidImage, ToolInputError
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext, ToolResult, canonical_image_name, resolve_image
from toolfabric_server.common.worker import Handler
from toolfabric_server.tools.ocr.reader import check_languages, read_lines
from toolfabric_server.tools.ocr.settings import OcrSettings
from toolfabric_server.tools.ocr.spec import OcrArgs


def handlers(common: CommonSettings) -> dict[str, Handler]:
    """The worker's `ocr` handler, with its settings (read here, at the worker's start) and its async bridge."""
    cfg = OcrSettings()
    blobs = BlobStore(redis_clients.sync_client("cache", common), common.blob_ttl_s)

    async def client() -> tuple[aredis.Redis, Closer]:
        redis = redis_clients.async_client("cache", common)  # the readings' cache, for the process
        return redis, redis.aclose  # type: ignore[attr-defined]  # (types-redis predates aclose)

    bridge: AsyncBridge[aredis.Redis] = AsyncBridge("ocr", client)

    def ocr(args: OcrArgs, ctx: ToolContext) -> ToolResult:
        return read_image(args, ctx, cfg, common, blobs, bridge)

    return {"ocr": ocr}


def read_image(args: OcrArgs, ctx: ToolContext, cfg: OcrSettings, common: CommonSettings, blobs: BlobStore,
               bridge: AsyncBridge[aredis.Redis]) -> ToolResult:
    name = canonical_image_name(args.image)
    ref = resolve_image(args.image, {canonical_image_name(n): r for n, r in ctx.images.items()})
    lang = args.lang or cfg.languages[0]
    check_languages(lang, cfg.languages)
    try:
        data = blobs.get(ref)
        bgr = images.decode_bgr(data, common.max_image_pixels, common.max_image_pixels_per_byte)
    except (BlobNotFound, InvalidImage) as exc:
        raise ToolInputError(f"{name} cannot be read: {exc}") from None

    def read() -> list[dict[str, Any]]:
        lines = read_lines(bgr, lang, cfg.page_segmentation, cfg.min_confidence, cfg.min_side, cfg.timeout_s)
        return [line.as_dict() for line in lines]

    lines, source = bridge.run(lambda client: _cached(client, ref, lang, read, ctx.trajectory_id, cfg, common))
    height, width = bgr.shape[:2]
    if not lines:
        text = f"No legible text found in {name} ({width}x{height})."
    else:
        body = "\n".join(f"{line['text']}  [box {list(line['box'])}]" for line in lines)
        text = f"Text read in {name} ({width}x{height}), one line each:\n{body}"
    if len(text) > cfg.max_output_chars:
        text = text[: cfg.max_output_chars] + f"\n… (cut at {cfg.max_output_chars} characters)"
    return ToolResult(text=text, data={"image": name, "lines": lines, "lang": lang},
                      usage={"ocr_cache_hit": float(source != "provider")})


async def _cached(client: aredis.Redis, ref: str, lang: str, read: Any, owner: str, cfg: OcrSettings,
                  common: CommonSettings) -> tuple[list[dict[str, Any]], str]:
    # Tesseract is local and deterministic: replay mode needs no recording, so only "off" turns caching off.
    if common.cache_mode == "off" or cfg.cache_ttl_s == 0:
        return await asyncio.to_thread(read), "provider"
    cache = Cache(client, None, "live", hot_ttl_s=cfg.cache_ttl_s, wait_s=cfg.timeout_s * 2,
                  lease_s=common.worker_lease_ttl_s)
    key = cache_key("ocr", image=ref, lang=lang, psm=cfg.page_segmentation, min_conf=cfg.min_confidence,
                    min_side=cfg.min_side)

    async def fetch() -> CacheEntry:
        return CacheEntry.now(await asyncio.to_thread(read), "tesseract")

    lookup = await cache.get_or_fetch(key, fetch, describe=f"ocr of {ref}", owner=owner)
    return list(lookup.entry.value), lookup.source
