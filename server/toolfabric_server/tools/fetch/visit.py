"""web_visit: read each URL (guarded fetch → extraction → passages) and build the observation.

Every URL is handled on its own: one URL's failure is an `{"url", "error"}` entry and the
others still come back. The observation text is a JSON list, one entry per URL::

    {"url", "final_url", "title", "content", "method": "full"|"passages"|"summary",
     "truncated", "images": [{"url", "alt"}, …]}      or      {"url", "error"}
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.cache import Cache, CacheEntry, cache_key
from toolfabric_server.common.errors import BlobNotFound, ToolError
from toolfabric_server.common.images import PIXELS_PER_BYTE
from toolfabric_server.common.tools import NewImage, ToolContext, ToolResult
from toolfabric_server.tools.fetch.images import check_image, image_bytes, store_image
from toolfabric_server.tools.fetch.spec import WebVisitArgs
from toolfabric_server.web.decoding import IMAGE_TYPES, PAGE_TYPES
from toolfabric_server.web.errors import FetchError
from toolfabric_server.web.extract import ImageLink, Page, extract
from toolfabric_server.web.fetcher import Fetched, Fetcher
from toolfabric_server.web.guard import Resolver
from toolfabric_server.web.passages import estimate_tokens, select
from toolfabric_server.web.settings import FetchSettings
from toolfabric_server.web.transport import PinnedNetworkBackend

log = logging.getLogger(__name__)


class HostGate(Protocol):
    """Per-host politeness shared by all workers (hostlimits.py): a slot, a token, robots."""

    def slot(self, host: str) -> Any: ...  # async context manager


class RobotsPolicy(Protocol):
    async def check(self, fetcher: Fetcher, url: str) -> None: ...  # raises RobotsDisallowed


class Summarizer(Protocol):
    async def summarize(self, page: Page, query: str, budget_tokens: int) -> str: ...


class PageSink(Protocol):
    """Where fetched pages go besides the cache: the local search index (indexing.py)."""

    async def add(self, fetched: Fetched) -> None: ...


@dataclass
class Services:
    """What web_visit uses beyond the network; each piece optional so tests pick what they need."""

    settings: FetchSettings
    blobs: AsyncBlobStore | None = None
    cache: Cache | None = None
    gate: HostGate | None = None
    robots: RobotsPolicy | None = None
    summarizer: Summarizer | None = None
    sink: PageSink | None = None
    resolver: Resolver | None = None
    network: PinnedNetworkBackend | None = None
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_image_pixels_per_byte: int = PIXELS_PER_BYTE


@dataclass
class _Outcome:
    entry: dict[str, Any]
    images: list[NewImage] = field(default_factory=list)


async def web_visit(args: WebVisitArgs, ctx: ToolContext, services: Services) -> ToolResult:
    settings = services.settings
    urls = list(dict.fromkeys(u.strip() if isinstance(u, str) else u for u in args.urls))
    visited, skipped = urls[: settings.max_urls_per_call], urls[settings.max_urls_per_call :]
    usage: Counter[str] = Counter()
    query = " ".join(x for x in (args.goal or "", ctx.question) if x)
    async with Fetcher(settings, services.resolver, services.network) as fetcher:
        visit = _Visit(services, fetcher, usage, args.goal, query, args.with_images, ctx.trail, ctx.trajectory_id)
        outcomes = await asyncio.gather(*(visit.one(u) for u in visited))
    entries = [o.entry for o in outcomes] + [
        {"url": u, "error": f"not visited: at most {settings.max_urls_per_call} URLs per call"} for u in skipped
    ]
    images = [img for o in outcomes for img in o.images]
    failed = [e for e in entries if "error" in e]
    usage["urls_failed"] += len(failed)
    text = json.dumps(entries, ensure_ascii=False)
    result = ToolResult(text=text, data=entries, images=images, usage={k: float(v) for k, v in usage.items()})
    if len(failed) == len(entries):
        result.ok = False
        result.error_kind = visit.first_error_kind or "fetch_error"
    return result


class _Visit:
    def __init__(self, services: Services, fetcher: Fetcher, usage: Counter[str], goal: str | None, query: str,
                 with_images: bool, trail: str = "", owner: str = "") -> None:
        self.s = services
        self.trail = trail  # the trajectory: its pages are recorded for `eval run --freeze`
        self.fetcher = fetcher
        self.usage = usage
        self.goal = goal
        self.query = query
        self.with_images = with_images
        self.owner = owner  # the trajectory: its deletion erases the pages it read from the cache
        self.first_error_kind: str | None = None

    async def one(self, url: str) -> _Outcome:
        try:
            return await self._one(url)
        except ToolError as exc:  # fetch errors, and the cache's (replay miss, single-flight timeout)
            self.first_error_kind = self.first_error_kind or exc.kind
            return _Outcome({"url": url, "error": str(exc)})
        except Exception as exc:  # a bug on one page must not lose the others
            log.exception("web_visit crashed on %s", url)
            self.first_error_kind = self.first_error_kind or "internal"
            return _Outcome({"url": url, "error": f"internal error while reading this page: {type(exc).__name__}"})

    async def _one(self, url: str) -> _Outcome:
        key = str(self.fetcher.guard.parse(url))  # policy errors before any cache or network use
        value = await self._lookup(key)
        if value.get("kind") == "image":
            return await self._image_entry(url, key, value)
        page = Page.from_json(value)
        content, method, truncated = await self._content(page)
        new_images: list[NewImage] = []
        if self.with_images and self.s.blobs is not None:
            new_images = await self._pull(self.s.blobs, page.images)
        entry = {
            "url": url,
            "final_url": page.url,
            "title": page.title,
            "content": content,
            "method": method,
            "truncated": truncated,
            "images": [{"url": i.url, "alt": i.alt} for i in page.images],
        }
        return _Outcome(entry, new_images)

    async def _lookup(self, key: str) -> dict[str, Any]:
        """The extracted page (or image facts) for `key`: from the shared cache or the web."""
        if self.s.cache is None:
            return (await self._read(key)).value  # type: ignore[no-any-return]
        # The cache folds case in its keys, and URL paths are case-sensitive: key by digest.
        cache_key_ = cache_key("web_visit", url_sha256=hashlib.sha256(key.encode()).hexdigest())
        lookup = await self.s.cache.get_or_fetch(cache_key_, lambda: self._read(key), describe=f"web_visit {key}",
                                                 trail=self.trail, owner=self.owner)
        if lookup.source in ("hot", "persistent"):
            self.usage[f"cache_hit_{lookup.source}"] += 1
        else:
            self.usage["cache_miss"] += 1
        return lookup.entry.value  # type: ignore[no-any-return]

    async def _read(self, key: str) -> CacheEntry:
        """Fetch and extract one URL (the cache's provider call)."""
        fetched = await self._fetch(key)
        if fetched.media_type in IMAGE_TYPES:
            return CacheEntry.now(await self._image_facts(fetched), "web")
        page = await asyncio.to_thread(extract, fetched.final_url, fetched.media_type, fetched.body, fetched.charset)
        if self.s.sink is not None:
            try:
                await self.s.sink.add(fetched)
            except Exception:  # indexing is a side effect; the model still gets its page
                log.exception("could not add %s to the local index", fetched.final_url)
        return CacheEntry.now(page.to_json(), "web")

    async def _fetch(self, url: str) -> Fetched:
        if self.s.robots is not None:
            await self.s.robots.check(self.fetcher, url)
        host = self.fetcher.guard.parse(url).host
        if self.s.gate is not None:
            async with self.s.gate.slot(host):
                fetched = await self.fetcher.fetch(url, PAGE_TYPES)
        else:
            fetched = await self.fetcher.fetch(url, PAGE_TYPES)
        self.usage["pages_fetched"] += 1
        self.usage["bytes_fetched"] += fetched.wire_bytes
        return fetched

    async def _content(self, page: Page) -> tuple[str, str, bool]:
        budget = self.s.settings.max_output_tokens
        if self.s.summarizer is not None and estimate_tokens(page.content) > budget:
            try:
                summary = await self.s.summarizer.summarize(page, self.query, budget)
                self.usage["summaries"] += 1
                return summary, "summary", True
            except FetchError as exc:  # the model service is down: fall back to extractive passages
                log.warning("summariser failed for %s: %s", page.url, exc)
                self.usage["summaries_failed"] += 1
        chosen = select(page.content, self.query, budget)
        return chosen.content, chosen.method, chosen.truncated

    async def _image_facts(self, fetched: Fetched) -> dict[str, Any]:
        """A URL that is an image: checked, and stored as a blob when there is a blob store."""
        info = check_image(fetched.body, fetched.final_url, self.s.max_image_pixels, self.s.max_image_pixels_per_byte)
        ref = await self.s.blobs.put(fetched.body) if self.s.blobs is not None else None
        return {"kind": "image", "url": fetched.final_url, "ref": ref, "mime_type": info.mime_type,
                "width": info.width, "height": info.height}

    async def _image_entry(self, url: str, key: str, facts: dict[str, Any]) -> _Outcome:
        """The observation for an image URL; the image joins the trajectory when blobs are kept."""
        images: list[NewImage] = []
        note = f"an image ({facts['mime_type']}, {facts['width']}x{facts['height']})"
        if self.s.blobs is not None:
            if not await _blob_alive(self.s.blobs, facts.get("ref")):
                facts = await self._image_facts(await self._fetch(key))  # cached facts, blob expired
            images.append(NewImage(ref=facts["ref"], width=facts["width"], height=facts["height"],
                                   origin=facts["url"], mime_type=facts["mime_type"]))
            self.usage["images_pulled"] += 1
            note += ", added to the conversation as a new image"
        entry = {
            "url": url, "final_url": facts["url"], "title": "", "content": note, "method": "full",
            "truncated": False, "images": [{"url": facts["url"], "alt": ""}],
        }
        return _Outcome(entry, images)

    async def _pull(self, blobs: AsyncBlobStore, links: list[ImageLink]) -> list[NewImage]:
        pulled: list[NewImage] = []
        for link in links:
            if len(pulled) >= self.s.settings.max_images_per_page:
                break
            try:
                data, final = await image_bytes(self.fetcher, link.url, self.s.max_image_bytes, self.s.max_image_pixels,
                                                self.s.max_image_pixels_per_byte)
                pulled.append(await store_image(blobs, data, final, self.s.max_image_pixels,
                                                self.s.max_image_pixels_per_byte))
            except FetchError as exc:  # one broken image does not spoil the page
                log.info("skipped image %s: %s", link.url, exc)
                self.usage["images_failed"] += 1
        self.usage["images_pulled"] += len(pulled)
        return pulled


async def _blob_alive(blobs: AsyncBlobStore, ref: str | None) -> bool:
    if not ref:
        return False
    try:
        await blobs.get(ref)
    except BlobNotFound:
        return False
    return True
