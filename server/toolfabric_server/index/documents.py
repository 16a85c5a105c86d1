"""Turning files and fetched bodies into indexable pages: HTML, markdown, plain text, PDF.

A page is its URL, a title, its visible text, and the images it shows with their alt text
and caption (a `<figure>`'s `<figcaption>`), so images can be found by words and by content.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from toolfabric_server.common.errors import ToolInputError
from toolfabric_server.web.decoding import detect
from toolfabric_server.web.errors import UndecodableContent
from toolfabric_server.web.extract import extract_pdf

HTML_TYPES = {"text/html", "application/xhtml+xml"}
MARKDOWN_TYPES = {"text/markdown", "text/x-markdown"}
TEXT_TYPES = {"text/plain"}
PDF_TYPES = {"application/pdf"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
_SUFFIX_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".xhtml": "application/xhtml+xml",
    ".md": "text/markdown", ".markdown": "text/markdown",
    ".txt": "text/plain", ".text": "text/plain", ".rst": "text/plain",
    ".pdf": "application/pdf",
}
# Elements whose text is not page content.
_DROP = ("script", "style", "noscript", "template", "nav", "svg", "iframe", "form", "footer")
# Site chrome repeated on every page (navigation bars, sidebars, permalink glyphs): it would make
# every page match the site's menu words. Sphinx, MkDocs and most themes mark it with these roles and classes.
_CHROME_ROLES = frozenset({"navigation", "search", "banner", "contentinfo"})
_CHROME_CLASSES = frozenset({"headerlink", "sphinxsidebar", "related", "breadcrumbs"})
# The page's main content, where the theme marks it.
_MAIN = "//*[@role='main']|//main|//article"
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_SPACES = re.compile(r"\s+")


class UnsupportedDocument(ToolInputError):
    """A body the indexer cannot read (type unknown, corrupt PDF)."""


@dataclass(frozen=True)
class PageImage:
    url: str
    alt: str = ""
    caption: str = ""

    @property
    def title(self) -> str:
        """What a search result shows for this image: alt text, else caption."""
        return self.alt or self.caption


@dataclass
class Page:
    url: str
    title: str
    text: str
    kind: str
    images: list[PageImage] = field(default_factory=list)
    headings: str = ""  # section headings, " | "-joined: ranked between title and body

    @property
    def content_hash(self) -> str:
        """What re-indexing compares: an unchanged page is not written again."""
        digest = hashlib.sha256()
        for part in (self.title, self.headings, self.text, self.kind):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
        return digest.hexdigest()


def content_type_for(name: str) -> str | None:
    suffix = PurePosixPath(urlsplit(name).path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image/" + suffix.lstrip(".")
    return _SUFFIX_TYPES.get(suffix)


def parse_document(url: str, data: bytes, content_type: str | None = None) -> Page:
    """Parse a body into a Page; the type comes from `content_type`, else the URL's suffix."""
    ctype = (content_type or content_type_for(url) or "").split(";")[0].strip().lower()
    if ctype in HTML_TYPES:
        return parse_html(url, data)
    if ctype in MARKDOWN_TYPES:
        return parse_markdown(url, _decode(data))
    if ctype in TEXT_TYPES:
        return parse_text(url, _decode(data))
    if ctype in PDF_TYPES:
        return parse_pdf(url, data)
    raise UnsupportedDocument(f"cannot index {url}: content type {ctype or 'unknown'} is not HTML, markdown, "
                              "text or PDF")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(detect(data), errors="replace")


def parse_html(url: str, data: bytes | str) -> Page:
    if not data.strip():  # lxml raises on an empty document
        return Page(url, _fallback_title(url), "", "html")
    root = lxml.html.document_fromstring(data)
    for el in root.iter(*_DROP):
        el.drop_tree()
    title_el = root.find(".//title")
    title = _clean(title_el.text_content()) if title_el is not None else ""
    if not title:
        h1 = root.find(".//h1")
        title = _clean(h1.text_content()) if h1 is not None else _fallback_title(url)
    images = []
    for img in root.iter("img"):
        src = (img.get("src") or "").strip()
        if not src or src.startswith("data:"):
            continue
        caption = ""
        figure = next((a for a in img.iterancestors("figure")), None)
        if figure is not None:
            fc = figure.find(".//figcaption")
            caption = _clean(fc.text_content()) if fc is not None else ""
        images.append(PageImage(urljoin(url, src), _clean(img.get("alt") or ""), caption))
    for el in _chrome(root):
        el.drop_tree()
    main = root.xpath(_MAIN)
    body = root.find(".//body")
    text_root = main[0] if main else body if body is not None else root
    # The h1 usually repeats the title: counted once, as the title.
    headings = " | ".join(dict.fromkeys(
        h for h in (_clean(el.text_content()) for el in text_root.iter(*_HEADINGS)) if h and h not in title))
    # Alt texts count as page text too: a photo's description is often the only mention of its subject.
    alts = " ".join(i.alt for i in images if i.alt)
    text = _clean(" ".join(text_root.itertext()) + " " + alts)
    return Page(url, title, text, "html", images, headings)


def _chrome(root: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    # One pass in Python: 4-5x faster on Sphinx's pages than XPath's contains(concat(normalize-space(@class)))
    # per class name, which had become most of the time spent parsing a page.
    out = []
    for el in root.iter(etree.Element):
        attrib = el.attrib
        if attrib and (attrib.get("role") in _CHROME_ROLES
                       or not _CHROME_CLASSES.isdisjoint(attrib.get("class", "").split())):
            out.append(el)
    return out


def parse_markdown(url: str, text: str) -> Page:
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(text)
    page = parse_html(url, f"<html><body>{html}</body></html>")
    heading = next((ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("# ")), "")
    page.title = heading or _first_line(text) or _fallback_title(url)
    page.kind = "markdown"
    return page


def parse_text(url: str, text: str) -> Page:
    return Page(url, _first_line(text) or _fallback_title(url), _clean(text), "text")


def parse_pdf(url: str, data: bytes) -> Page:
    # The fetch service's reader: the same page markers and page cap as web_visit shows the model.
    try:
        extracted = extract_pdf(data, url)
    except UndecodableContent as exc:
        raise UnsupportedDocument(f"cannot read PDF {url}: {exc}") from None
    return Page(url, _clean(extracted.title) or _fallback_title(url), _clean(extracted.content), "pdf")


def _first_line(text: str, limit: int = 120) -> str:
    for line in text.splitlines():
        if line.strip():
            return _clean(line)[:limit]
    return ""


def _fallback_title(url: str) -> str:
    name = PurePosixPath(urlsplit(url).path).name
    return name or url
