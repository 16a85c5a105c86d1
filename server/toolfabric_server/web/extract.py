"""Fetched bytes → a `Page`: title, main content as text, and the images it shows.

HTML: the main content is found by trafilatura (tables, lists, headings and links kept, as
markdown), with readability-lxml and then the whole body as fallbacks when it finds too little
(see bench/fetch.py for the measured comparison). Links and image URLs are made absolute
against the final URL (or the page's <base>). PDFs become text with `[page N]` markers.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import lxml.html
import trafilatura
from lxml import etree

from toolfabric_server.web.cleanup import (
    LARGE_PAGE_CHARS,
    blocks_text,
    drop_permalinks,
    unescape_markdown,
    unlink_link_lists,
)
from toolfabric_server.web.decoding import HTML_TYPES, PDF_TYPES, TEXT_TYPES, decode_text
from toolfabric_server.web.errors import UndecodableContent, UnsupportedContentType

log = logging.getLogger(__name__)

MAX_IMAGES = 30
MAX_PDF_PAGES = 300


@dataclass(frozen=True)
class ImageLink:
    url: str
    alt: str = ""


@dataclass
class Page:
    url: str
    title: str
    content: str
    kind: str  # html | text | pdf
    images: list[ImageLink] = field(default_factory=list)
    encoding: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "title": self.title,
            "content": self.content,
            "kind": self.kind,
            "images": [{"url": i.url, "alt": i.alt} for i in self.images],
            "encoding": self.encoding,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Page:
        return cls(
            url=str(data["url"]),
            title=str(data.get("title") or ""),
            content=str(data.get("content") or ""),
            kind=str(data.get("kind") or "html"),
            images=[ImageLink(str(i["url"]), str(i.get("alt") or "")) for i in data.get("images") or []],
            encoding=data.get("encoding") or None,
        )


def extract(url: str, media_type: str, body: bytes, charset: str | None) -> Page:
    if media_type in HTML_TYPES:
        text, encoding = decode_text(body, charset, html=True)
        page = extract_html(text, url)
        page.encoding = encoding
        return page
    if media_type in TEXT_TYPES:
        text, encoding = decode_text(body, charset, html=False)
        text = _normalise_space(text)
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return Page(url, first[:120], text, "text", encoding=encoding)
    if media_type in PDF_TYPES:
        return extract_pdf(body, url)
    raise UnsupportedContentType(f"{media_type} has no text to extract")


# --- HTML -------------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\u00a0]+")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_BLANKS = re.compile(r"\n{3,}")


def _normalise_space(text: str) -> str:
    lines = [_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def parse_html(text: str, url: str) -> lxml.html.HtmlElement:
    """Parse and make every link absolute (honouring <base href>)."""
    text = _XML_DECLARATION.sub("", text, count=1)  # lxml refuses str input that declares an encoding
    try:
        tree = lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as exc:
        raise UndecodableContent(f"the page is not parseable HTML: {exc}") from None
    base = tree.find(".//base[@href]")
    base_url = url
    if base is not None:
        try:
            base_url = lxml.html.urljoin(url, base.get("href", ""))
        except ValueError:
            base_url = url
    try:
        tree.make_links_absolute(base_url, resolve_base_href=False, handle_failures="discard")
    except ValueError:
        pass
    return tree


def page_title(tree: lxml.html.HtmlElement) -> str:
    for xpath in ("//meta[@property='og:title']/@content", "//title//text()", "//h1//text()"):
        found = " ".join(str(t) for t in tree.xpath(xpath)).strip()
        if found:
            return _WS.sub(" ", found)[:300]
    return ""


def page_images(tree: lxml.html.HtmlElement) -> list[ImageLink]:
    """Content images with alt text: main/article first, icons and inline data skipped."""
    scopes = tree.xpath("//main|//article|//*[@role='main']") or [tree]
    seen: dict[str, ImageLink] = {}
    for scope in [*scopes, tree]:
        for img in scope.iter("img"):
            src = (img.get("src") or img.get("data-src") or "").strip()
            if not src.startswith(("http://", "https://")) or src in seen:
                continue
            if _tiny(img.get("width")) or _tiny(img.get("height")):
                continue
            alt = (img.get("alt") or img.get("title") or "").strip()
            if not alt:
                figure = next((a for a in img.iterancestors("figure")), None)
                caption = figure.find(".//figcaption") if figure is not None else None
                alt = caption.text_content().strip() if caption is not None else ""
            seen[src] = ImageLink(src, _WS.sub(" ", alt)[:300])
            if len(seen) >= MAX_IMAGES:
                return list(seen.values())
    return list(seen.values())


def _tiny(size: str | None) -> bool:
    digits = re.match(r"\s*(\d+)", size or "")
    return bool(digits) and int(digits.group(1)) <= 32  # type: ignore[union-attr]


def extract_html(text: str, url: str) -> Page:
    tree = parse_html(text, url)
    title = page_title(tree)
    images = page_images(tree)
    drop_permalinks(tree)
    unlink_link_lists(tree)
    body_text = _normalise_space(tree.text_content()) if tree.find("body") is not None else ""
    # trafilatura's cost grows faster than the page: a very large one is read in one pass instead.
    content = _normalise_space(blocks_text(tree)) if len(text) > LARGE_PAGE_CHARS else main_content(tree)
    if len(content) < min(200, len(body_text) // 5):
        content = _readability(text, url) or content
    if len(content) < min(200, len(body_text) // 5):
        content = body_text
    return Page(url, title, content, "html", images)


def main_content(tree: lxml.html.HtmlElement) -> str:
    """trafilatura's markdown of the main content ("" when it finds nothing)."""
    try:
        out = trafilatura.extract(
            tree,
            output_format="markdown",
            include_tables=True,
            include_links=True,
            include_images=False,
            include_formatting=True,
            include_comments=False,
            favor_recall=True,
            deduplicate=False,
        )
    except Exception:  # trafilatura raises assorted errors on hostile markup
        log.exception("trafilatura failed")
        return ""
    return unescape_markdown(_normalise_space(out or ""))


def _readability(text: str, url: str) -> str:
    from readability import Document

    try:
        summary = Document(text, url=url).summary(html_partial=True)
        return _normalise_space(lxml.html.fromstring(summary).text_content())
    except Exception:  # readability raises on empty or broken documents
        return ""


# --- PDF --------------------------------------------------------------------------------------


def extract_pdf(body: bytes, url: str) -> Page:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            if number > MAX_PDF_PAGES:
                pages.append(f"[… {len(reader.pages) - MAX_PDF_PAGES} more pages not read]")
                break
            pages.append(f"[page {number}]\n{_normalise_space(page.extract_text() or '')}")
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title).strip()
    except PdfReadError as exc:
        raise UndecodableContent(f"the PDF could not be read: {exc}") from None
    except Exception as exc:  # pypdf raises whatever its parser trips over on a broken file (found by fuzzing)
        raise UndecodableContent(f"the PDF could not be read ({type(exc).__name__}: {exc})") from None
    if not title:
        title = next((line for p in pages for line in p.splitlines()[1:] if line.strip()), "")[:120]
    return Page(url, title, "\n\n".join(pages), "pdf")
