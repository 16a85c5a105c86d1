"""Loading corpora into the local index: `toolfabric index PATH_OR_URLS`, and pages fetched by web_visit.

Pages (HTML, markdown, text, PDF) are indexed for BM25; every image a page shows is
fingerprinted by content and recorded with that page as its `source`, its alt text or caption
as its title. Image files no page shows are indexed on their own (their own URL as source).
With `base_url`, a file `DIR/x.html` under a directory argument is recorded at `base_url + "x.html"`;
without it, at its `file://` URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit

from toolfabric_server.common.errors import InvalidImage, ToolError
from toolfabric_server.common.images import PIXELS_PER_BYTE
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.index import ImageOccurrence, SearchIndex, open_index
from toolfabric_server.index.crawl import Crawl, crawl_links
from toolfabric_server.index.dedup import Duplicates
from toolfabric_server.index.documents import HTML_TYPES, IMAGE_SUFFIXES, Page, content_type_for, parse_document
from toolfabric_server.index.imagematch import Fingerprint, fingerprint
from toolfabric_server.index.selection import Selection
from toolfabric_server.index.settings import IndexSettings
from toolfabric_server.web.decoding import PAGE_TYPES
from toolfabric_server.web.fetcher import Fetched, Fetcher
from toolfabric_server.web.robots import allows, download_rules
from toolfabric_server.web.settings import FetchSettings

T = TypeVar("T")

BATCH = 200
DOCUMENT_TYPES = {"text/html", "application/xhtml+xml", "text/markdown", "text/plain", "application/pdf"}


@dataclass
class IndexReport:
    pages: int = 0  # pages added or changed
    unchanged: int = 0  # pages already indexed with the same content (nothing written)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (URL, the page it copies)
    excluded: int = 0  # files left out by the include/exclude globs
    images: int = 0  # distinct image contents fingerprinted
    occurrences: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path or URL, why)
    file_urls: int = 0  # pages recorded at file:// URLs (no --base-url)
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"indexed {self.pages} pages, {self.images} images ({self.occurrences} placements) "
                f"in {self.seconds:.1f}s")
        extras = []
        if self.unchanged:
            extras.append(f"{self.unchanged} unchanged")
        if self.duplicates:
            extras.append(f"{len(self.duplicates)} duplicates collapsed")
        if self.excluded:
            extras.append(f"{self.excluded} files excluded")
        if extras:
            text += " (" + ", ".join(extras) + ")"
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(f"{p} ({why})" for p, why in self.skipped[:5])
        return text


@dataclass(frozen=True)
class _Source:
    url: str  # where the index records it
    local: Path | None  # file on disk, or None for a remote URL
    depth: int = 0  # crawl depth (links followed from a start URL)


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https")


def _expand(paths: list[str], base_url: str | None, selection: Selection,
            report: IndexReport) -> tuple[list[_Source], list[_Source]]:
    """Documents and image files to index, with the URL each is recorded at."""
    base = None if base_url is None else (base_url if base_url.endswith("/") else base_url + "/")
    docs: list[_Source] = []
    images: list[_Source] = []
    for item in paths:
        if _is_url(item):
            docs.append(_Source(item, None))
            continue
        path = Path(item)
        if path.is_dir():
            root, files = path, sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            root, files = path.parent, [path]
        else:
            report.skipped.append((item, "no such file or directory"))
            continue
        for f in files:
            rel = f.relative_to(root).as_posix()
            if path.is_dir() and selection.excluded_by(rel):
                report.excluded += 1
                continue
            url = base + rel if base else f.resolve().as_uri()
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_Source(url, f))
            elif content_type_for(f.name) in DOCUMENT_TYPES:
                docs.append(_Source(url, f))
    return docs, images


class _Loader:
    """Reads local files and (for URL arguments) remote pages and their images.

    Remote reads go through the fetch service's fetcher, so `toolfabric index URL` gets the same
    SSRF guard, size caps and timeouts as web_visit (private hosts need the fetch allowlist); a
    crawl also asks each site's robots.txt. Pages read from disk never cause a network request:
    an image they show that is not among the indexed files is left out.
    """

    def __init__(self, by_url: dict[str, Path], fetch: FetchSettings, max_bytes: int) -> None:
        self._by_url, self._fetch_settings = by_url, fetch
        self._runner: asyncio.Runner | None = None
        self._fetcher: Fetcher | None = None
        self._max_bytes = max_bytes
        self._robots: dict[str, str] = {}

    def _run(self, work: Callable[[Fetcher], Awaitable[T]]) -> T:
        async def go() -> T:
            if self._fetcher is None:
                self._fetcher = Fetcher(self._fetch_settings)
            return await work(self._fetcher)

        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(go())

    def fetch(self, url: str) -> Fetched:
        return self._run(lambda f: f.fetch(url, PAGE_TYPES, self._max_bytes))

    def robots_allow(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = self._run(lambda f: download_rules(f, origin))
        return allows(self._robots[origin], self._fetch_settings.user_agent, url)

    def load(self, url: str, local: Path | None = None, network: bool = True) -> tuple[bytes, str | None]:
        path = local or self._by_url.get(url)
        if path is None and urlsplit(url).scheme == "file":
            path = Path(unquote(urlsplit(url).path))
        if path is not None:
            return path.read_bytes(), None
        if not _is_url(url):
            raise OSError(f"cannot load {url}")
        if not network:
            raise _NotLocal(f"{url} is not among the indexed files (folders are indexed without network access)")
        fetched = self.fetch(url)
        return fetched.body, fetched.media_type

    def close(self) -> None:
        if self._runner is not None:
            if self._fetcher is not None:
                self._runner.run(self._fetcher.aclose())
            self._runner.close()


class _NotLocal(OSError):
    """An image a local page shows that lives elsewhere: not fetched, not an error worth reporting."""


class _Batch:
    def __init__(self, index: SearchIndex, report: IndexReport) -> None:
        self.index, self.report = index, report
        self.pages: list[Page] = []
        self.fingerprints: dict[str, Fingerprint] = {}
        self.known: set[str] = set()
        self.occurrences: dict[str, list[ImageOccurrence]] = {}

    def add_image(self, fp: Fingerprint) -> None:
        if fp.content_hash not in self.known:
            self.known.add(fp.content_hash)
            self.fingerprints[fp.content_hash] = fp
            self.report.images += 1

    def flush(self, force: bool = False) -> None:
        if not force and len(self.pages) + len(self.fingerprints) < BATCH:
            return
        if self.pages:
            written = self.index.upsert_pages(self.pages)
            self.report.pages += written
            self.report.unchanged += len({p.url for p in self.pages}) - written
        if self.fingerprints:
            self.index.upsert_images(list(self.fingerprints.values()))
        for page_url, occs in self.occurrences.items():
            self.index.set_occurrences(page_url, occs)
        self.pages, self.fingerprints, self.occurrences = [], {}, {}


@dataclass(frozen=True)
class IndexingSettings:
    """What indexing reads: the image limits and where the index is (common), what to leave out and how near
    two images are duplicates (index), and how pages are downloaded (the fetch service's guard and limits)."""

    common: CommonSettings
    index: IndexSettings
    fetch: FetchSettings

    @classmethod
    def read(cls) -> IndexingSettings:
        """From the environment, now (`toolfabric index` at its start; tests)."""
        return cls(CommonSettings(), IndexSettings(), FetchSettings())


def index_paths(paths: list[str], base_url: str | None = None, progress: bool = True, *,
                index: SearchIndex, settings: IndexingSettings, selection: Selection | None = None,
                crawl: Crawl | None = None) -> IndexReport:
    """Index files, directories (recursively) and http(s) URLs; returns what was indexed and skipped.

    With `crawl`, each URL argument is a start page: same-site links are followed breadth-first
    within the crawl's page, depth and rate limits.
    """
    started = time.monotonic()
    config = settings.index
    if selection is None:
        selection = Selection(exclude=list(config.index_exclude))
    max_pixels = settings.common.max_image_pixels
    per_byte = settings.common.max_image_pixels_per_byte
    report = IndexReport()
    docs, image_files = _expand(paths, base_url, selection, report)
    report.file_urls = sum(1 for d in docs if d.url.startswith("file:"))
    loader = _Loader({s.url: s.local for s in [*docs, *image_files] if s.local is not None}, settings.fetch,
                     settings.common.max_image_bytes)
    batch = _Batch(index, report)
    dups = Duplicates(config.index_near_duplicate_bits)
    shown: set[str] = set()  # image URLs some page shows
    fp_by_url: dict[str, Fingerprint | None] = {}

    def image_fp(url: str, network: bool) -> Fingerprint | None:
        if url not in fp_by_url:
            try:
                data, _ = loader.load(url, network=network)
                fp_by_url[url] = fingerprint(data, max_pixels, max_pixels_per_byte=per_byte)
            except _NotLocal:
                fp_by_url[url] = None
            except (OSError, ToolError, InvalidImage) as exc:
                report.skipped.append((url, f"image not indexed: {exc}"))
                fp_by_url[url] = None
        return fp_by_url[url]

    queue = deque(docs)
    seen = {d.url for d in docs}
    crawled = 0
    bar = _progress(len(docs) + len(image_files), progress, "pages" if crawl else "files")
    try:
        while queue:
            src = queue.popleft()
            ctype: str | None
            try:
                if crawl and src.local is None:
                    if crawled >= crawl.max_pages:
                        continue  # links found beyond the page limit: not counted on the bar
                    if crawled:
                        time.sleep(1.0 / crawl.rate_per_s)  # politeness between requests to the site
                    if crawl.respect_robots and not loader.robots_allow(src.url):
                        report.skipped.append((src.url, "robots.txt disallows it"))
                        bar.update(1)
                        continue
                    crawled += 1
                    fetched = loader.fetch(src.url)
                    data, ctype, url = fetched.body, fetched.media_type, fetched.final_url
                    if ctype in HTML_TYPES and src.depth < crawl.max_depth:
                        for link in crawl_links(url, data, selection):
                            if link not in seen and len(seen) < crawl.max_pages * 4:
                                seen.add(link)
                                queue.append(_Source(link, None, src.depth + 1))
                                bar.total = min(len(seen), crawl.max_pages) + len(image_files)
                                bar.refresh()
                else:
                    data, ctype = loader.load(src.url, src.local)
                    url = src.url
                page = parse_document(url, data, ctype)
            except (OSError, ToolError) as exc:
                report.skipped.append((src.url, str(exc)))
                bar.update(1)
                continue
            original = dups.original_of(page.url, page.content_hash, page.text)
            if original is not None and original != page.url:
                report.duplicates.append((page.url, original))
                bar.update(1)
                continue
            occs = []
            for img in page.images:
                shown.add(img.url)
                fp = image_fp(img.url, network=src.local is None)
                if fp is not None:
                    batch.add_image(fp)
                    occs.append(ImageOccurrence(fp.content_hash, page.url, img.url, img.title or page.title))
            batch.pages.append(page)
            batch.occurrences[page.url] = occs
            report.occurrences += len(occs)
            bar.update(1)
            batch.flush()
        for src in image_files:
            if src.url not in shown:  # shown images are already recorded with their page as source
                fp = image_fp(src.url, network=False)
                if fp is not None:
                    batch.add_image(fp)
                    title = PurePosixPath(urlsplit(src.url).path).stem.replace("-", " ").replace("_", " ")
                    batch.occurrences[src.url] = [ImageOccurrence(fp.content_hash, src.url, src.url, title)]
                    report.occurrences += 1
            bar.update(1)
            batch.flush()
        batch.flush(force=True)
    finally:
        bar.close()
        loader.close()
    report.seconds = time.monotonic() - started
    return report


def index_document(url: str, data: bytes, content_type: str | None = None,
                   images: Mapping[str, bytes] | None = None, *, index: SearchIndex, max_pixels: int,
                   max_pixels_per_byte: int = PIXELS_PER_BYTE) -> Page:
    """Index one fetched body (web_visit uses this); `images` maps image URLs on the page to their bytes."""
    page = parse_document(url, data, content_type)
    fps, occs = [], []
    for img in page.images:
        body = (images or {}).get(img.url) or (images or {}).get(urljoin(url, img.url))
        if body is None:
            continue
        try:
            fp = fingerprint(body, max_pixels, max_pixels_per_byte=max_pixels_per_byte)
        except InvalidImage:
            continue
        fps.append(fp)
        occs.append(ImageOccurrence(fp.content_hash, page.url, img.url, img.title or page.title))
    index.upsert_pages([page])
    if fps:
        index.upsert_images(fps)
    # Without image bytes this is a text-only refresh (web_visit reads text): the page's known
    # images stay findable by reverse image search instead of being dropped.
    if images:
        index.set_occurrences(page.url, occs)
    return page


class _NoBar:
    total = 0

    def update(self, n: int) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, unit: str = "files"):  # type: ignore[no-untyped-def]
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit.rstrip("s"), desc="indexing")


def run(args: argparse.Namespace) -> int:
    """`toolfabric index`: 0 when something was indexed (or was already), 1 when nothing could be."""
    settings = IndexingSettings.read()  # the command's start: read once, passed down
    config = settings.index
    exclude = [] if args.all_files else list(config.index_exclude)
    selection = Selection(include=list(args.include or []), exclude=[*exclude, *(args.exclude or [])])
    urls = [p for p in args.paths if _is_url(p)]
    crawl = None
    if args.crawl:
        if not urls:
            print("toolfabric index: --crawl needs a start URL (http:// or https://)", file=sys.stderr)
            return 2
        crawl = Crawl(max_pages=args.max_pages or config.crawl_max_pages,
                      max_depth=config.crawl_max_depth if args.max_depth is None else args.max_depth,
                      rate_per_s=args.rate or config.crawl_rate_per_s,
                      respect_robots=not args.ignore_robots)
    elif urls:
        print(f"toolfabric index: indexing {len(urls)} page(s) only; add --crawl to follow their same-site links",
              file=sys.stderr)
    local = [p for p in args.paths if not _is_url(p) and Path(p).is_dir()]
    if local and not args.base_url:
        print("toolfabric index: warning: no --base-url, so results point at file:// URLs that web_visit cannot "
              "open; pass --base-url with the address where this folder is served", file=sys.stderr)
    index = open_index(settings.common)
    try:
        if args.clear:
            index.clear()
        report = index_paths(args.paths, base_url=args.base_url, progress=not args.no_progress, index=index,
                             settings=settings, selection=selection, crawl=crawl)
    finally:
        index.close()
    print(report.summary())
    return 0 if report.pages or report.unchanged or report.occurrences else 1
