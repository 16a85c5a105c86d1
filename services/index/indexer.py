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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

from services.common import settings
from services.common.errors import InvalidImage, ToolError
from services.index import ImageOccurrence, SearchIndex, default_index
from services.index.documents import IMAGE_SUFFIXES, Page, content_type_for, parse_document
from services.index.imagematch import Fingerprint, fingerprint
from services.web.decoding import PAGE_TYPES
from services.web.fetcher import Fetched, Fetcher

BATCH = 200
DOCUMENT_TYPES = {"text/html", "application/xhtml+xml", "text/markdown", "text/plain", "application/pdf"}


@dataclass
class IndexReport:
    pages: int = 0
    images: int = 0  # distinct image contents fingerprinted
    occurrences: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path or URL, why)
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"indexed {self.pages} pages, {self.images} images ({self.occurrences} placements) "
                f"in {self.seconds:.1f}s")
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(f"{p} ({why})" for p, why in self.skipped[:5])
        return text


@dataclass(frozen=True)
class _Source:
    url: str  # where the index records it
    local: Path | None  # file on disk, or None for a remote URL


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https")


def _expand(paths: list[str], base_url: str | None) -> tuple[list[_Source], list[_Source], list[tuple[str, str]]]:
    """Documents and image files to index, with the URL each is recorded at."""
    base = None if base_url is None else (base_url if base_url.endswith("/") else base_url + "/")
    docs: list[_Source] = []
    images: list[_Source] = []
    missing: list[tuple[str, str]] = []
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
            missing.append((item, "no such file or directory"))
            continue
        for f in files:
            rel = f.relative_to(root).as_posix()
            url = base + rel if base else f.resolve().as_uri()
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_Source(url, f))
            elif content_type_for(f.name) in DOCUMENT_TYPES:
                docs.append(_Source(url, f))
    return docs, images, missing


class _Loader:
    """Reads local files and (for URL arguments) remote pages and their images.

    Remote reads go through the fetch service's fetcher, so `toolfabric index URL` gets the same
    SSRF guard, size caps and timeouts as web_visit (private hosts need the fetch allowlist).
    """

    def __init__(self, by_url: dict[str, Path]) -> None:
        self._by_url = by_url
        self._runner: asyncio.Runner | None = None
        self._fetcher: Fetcher | None = None
        self._max_bytes = settings.common().max_image_bytes

    def _fetch(self, url: str) -> Fetched:
        async def get() -> Fetched:
            if self._fetcher is None:
                self._fetcher = Fetcher(settings.fetch())
            return await self._fetcher.fetch(url, PAGE_TYPES, self._max_bytes)

        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(get())

    def load(self, url: str, local: Path | None = None) -> tuple[bytes, str | None]:
        path = local or self._by_url.get(url)
        if path is None and urlsplit(url).scheme == "file":
            path = Path(unquote(urlsplit(url).path))
        if path is not None:
            return path.read_bytes(), None
        if not _is_url(url):
            raise OSError(f"cannot load {url}")
        fetched = self._fetch(url)
        return fetched.body, fetched.media_type

    def close(self) -> None:
        if self._runner is not None:
            if self._fetcher is not None:
                self._runner.run(self._fetcher.aclose())
            self._runner.close()


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
            self.index.upsert_pages(self.pages)
        if self.fingerprints:
            self.index.upsert_images(list(self.fingerprints.values()))
        for page_url, occs in self.occurrences.items():
            self.index.set_occurrences(page_url, occs)
        self.pages, self.fingerprints, self.occurrences = [], {}, {}


def index_paths(paths: list[str], base_url: str | None = None, progress: bool = True,
                index: SearchIndex | None = None) -> IndexReport:
    """Index files, directories (recursively) and http(s) URLs; returns what was indexed and skipped."""
    started = time.monotonic()
    index = index or default_index()
    max_pixels = settings.common().max_image_pixels
    docs, image_files, missing = _expand(paths, base_url)
    report = IndexReport(skipped=list(missing))
    loader = _Loader({s.url: s.local for s in [*docs, *image_files] if s.local is not None})
    batch = _Batch(index, report)
    shown: set[str] = set()  # image URLs some page shows
    fp_by_url: dict[str, Fingerprint | None] = {}

    def image_fp(url: str) -> Fingerprint | None:
        if url not in fp_by_url:
            try:
                data, _ = loader.load(url)
                fp_by_url[url] = fingerprint(data, max_pixels)
            except (OSError, ToolError, InvalidImage) as exc:
                report.skipped.append((url, f"image not indexed: {exc}"))
                fp_by_url[url] = None
        return fp_by_url[url]

    bar = _progress(len(docs) + len(image_files), progress)
    try:
        for src in docs:
            try:
                data, ctype = loader.load(src.url, src.local)
                page = parse_document(src.url, data, ctype)
            except (OSError, ToolError) as exc:
                report.skipped.append((src.url, str(exc)))
                bar.update(1)
                continue
            occs = []
            for img in page.images:
                shown.add(img.url)
                fp = image_fp(img.url)
                if fp is not None:
                    batch.add_image(fp)
                    occs.append(ImageOccurrence(fp.content_hash, page.url, img.url, img.title or page.title))
            batch.pages.append(page)
            batch.occurrences[page.url] = occs
            report.pages += 1
            report.occurrences += len(occs)
            bar.update(1)
            batch.flush()
        for src in image_files:
            if src.url not in shown:  # shown images are already recorded with their page as source
                fp = image_fp(src.url)
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
                   images: Mapping[str, bytes] | None = None, index: SearchIndex | None = None) -> Page:
    """Index one fetched body (web_visit uses this); `images` maps image URLs on the page to their bytes."""
    index = index or default_index()
    page = parse_document(url, data, content_type)
    max_pixels = settings.common().max_image_pixels
    fps, occs = [], []
    for img in page.images:
        body = (images or {}).get(img.url) or (images or {}).get(urljoin(url, img.url))
        if body is None:
            continue
        try:
            fp = fingerprint(body, max_pixels)
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
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="indexing")


def run(args: argparse.Namespace) -> int:
    """`toolfabric index`: 0 when something was indexed, 1 when nothing could be."""
    index = default_index()
    if args.clear:
        index.clear()
    report = index_paths(args.paths, base_url=args.base_url, progress=not args.no_progress, index=index)
    print(report.summary())
    return 0 if report.pages or report.occurrences else 1
