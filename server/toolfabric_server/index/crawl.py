"""`toolfabric index URL --crawl`: which links of a fetched page are followed.

Same site only (scheme, host and port of the page), fragments and queries dropped so one page
is one URL, only paths that may be documents (no images, archives or scripts), and the
include/exclude globs applied to the URL path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.html
from lxml import etree

from toolfabric_server.index.selection import Selection

# Suffixes that are never documents (no request is spent on them).
_SKIP_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".ico", ".css", ".js", ".zip", ".gz",
                  ".tar", ".bz2", ".xz", ".whl", ".exe", ".dmg", ".mp4", ".mp3", ".woff", ".woff2", ".ttf", ".inv"}


@dataclass(frozen=True)
class Crawl:
    max_pages: int
    max_depth: int
    rate_per_s: float
    respect_robots: bool = True


def crawl_links(page_url: str, html: bytes, selection: Selection) -> list[str]:
    """The same-site document links of an HTML page, in page order, without duplicates."""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return []
    base_el = root.find(".//base[@href]")
    base = urljoin(page_url, base_el.get("href", "")) if base_el is not None else page_url
    site = urlsplit(page_url)
    out: dict[str, None] = {}
    for a in root.iter("a"):
        href = (a.get("href") or "").strip()
        if not href or href.startswith(("#", "mailto:", "javascript:")):
            continue
        try:
            parts = urlsplit(urljoin(base, href))
        except ValueError:
            continue
        if (parts.scheme, parts.netloc) != (site.scheme, site.netloc):
            continue
        path = parts.path or "/"
        if PurePosixPath(path).suffix.lower() in _SKIP_SUFFIXES or selection.excluded_by(path):
            continue
        out[urlunsplit((parts.scheme, parts.netloc, path, "", ""))] = None
    return list(out)
