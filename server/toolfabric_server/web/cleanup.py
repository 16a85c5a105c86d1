"""What extraction must not lose or add on real sites, fixed around the main extractor.

Before it (on the parsed tree):
- permalink anchors (Sphinx's `¶`, `§`, `#`, `🔗` links to the element's own id) are removed;
- lists made only of links inside the main content (a "New modules" list, a table of contents)
  get their links turned into text, because a link-density filter drops them whole otherwise.
After it (on the markdown text): backslash escapes of markdown syntax (`2\\*\\*19937-1`,
`lru\\_cache`) are undone, since the model reads text, not markdown source.

Very large pages (over LARGE_PAGE_CHARS of HTML) skip the main extractor, whose cost grows
faster than the page: `blocks_text` walks the main content once and writes headings, list
items, table rows and code blocks the same way.
"""

from __future__ import annotations

import re

import lxml.html

LARGE_PAGE_CHARS = 600_000
_PERMALINK_TEXT = {"¶", "§", "#", "🔗", "link", "permalink"}
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>=])")
_MAIN = "//*[@role='main']|//main|//article|//div[contains(concat(' ', normalize-space(@class), ' '), ' body ')]"
_HEADINGS = {"h1": "#", "h2": "##", "h3": "###", "h4": "####", "h5": "#####", "h6": "######"}
_SKIP = {"script", "style", "noscript", "template", "nav", "footer", "form", "svg", "iframe", "button"}
_SPACES = re.compile(r"[ \t\r\n\u00a0]+")


def drop_permalinks(tree: lxml.html.HtmlElement) -> None:
    for a in tree.xpath("//a[@href]"):
        text = (a.text_content() or "").strip()
        href = a.get("href", "")
        cls = a.get("class", "")
        if "headerlink" in cls or (text.lower() in _PERMALINK_TEXT and "#" in href):
            a.drop_tree()


def unlink_link_lists(tree: lxml.html.HtmlElement) -> None:
    """Turn the links of link-only lists in the main content into plain text (kept by the extractor)."""
    mains = tree.xpath(_MAIN)
    if not mains:
        return
    for lst in mains[0].iter("ul", "ol"):
        items = [li for li in lst if li.tag == "li"]
        if items and all(_only_links(li) for li in items):
            for a in lst.iter("a"):
                a.tag = "span"
                a.attrib.clear()


def _only_links(li: lxml.html.HtmlElement) -> bool:
    own = (li.text or "").strip() + "".join((c.tail or "").strip() for c in li)
    return not own.strip(" ,;:()\u2013-") and any(c.tag == "a" or c.find(".//a") is not None for c in li)


def unescape_markdown(text: str) -> str:
    return _ESCAPE.sub(r"\1", text)


def blocks_text(tree: lxml.html.HtmlElement) -> str:
    """Main content as markdown-like text in one pass (for pages too large for the main extractor)."""
    mains = tree.xpath(_MAIN)
    root = mains[0] if mains else (tree.find("body") if tree.find("body") is not None else tree)
    out: list[str] = []
    _walk(root, out)
    return "\n\n".join(b for b in out if b.strip())


def _walk(el: lxml.html.HtmlElement, out: list[str]) -> None:
    for child in el:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in _SKIP or not tag:
            continue
        if tag in _HEADINGS:
            out.append(f"{_HEADINGS[tag]} {_text(child)}")
        elif tag == "pre":
            out.append("```\n" + child.text_content().strip("\n") + "\n```")
        elif tag in ("ul", "ol"):
            out.append("\n".join(f"- {_text(li)}" for li in child if li.tag == "li" and _text(li)))
        elif tag == "table":
            rows = [" | ".join(_text(c) for c in tr if c.tag in ("td", "th")) for tr in child.iter("tr")]
            out.append("\n".join(f"| {r} |" for r in rows if r.strip(" |")))
        elif tag in ("p", "dt", "dd", "blockquote", "figcaption", "li") or not _has_blocks(child):
            text = _text(child)
            if text:
                out.append(text)
        else:
            _walk(child, out)


def _has_blocks(el: lxml.html.HtmlElement) -> bool:
    return any(isinstance(c.tag, str) and c.tag in ("p", "div", "section", "ul", "ol", "table", "pre", "dl",
                                                     "h1", "h2", "h3", "h4", "h5", "h6", "article", "blockquote")
               for c in el.iterdescendants())


def _text(el: lxml.html.HtmlElement) -> str:
    return _SPACES.sub(" ", el.text_content()).strip()
