"""What extraction keeps: title, headings, lists, tables as text, absolute links, images with alt."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolfabric_server.web.decoding import decode_text
from toolfabric_server.web.errors import UndecodableContent
from toolfabric_server.web.extract import extract_html, extract_pdf
from toolfabric_server.web.passages import select, split_passages

GUIDE = """<html><head><title>Guide</title><base href="https://docs.example.org/v2/"></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<main><h1>Installing Kestrel</h1>
<p>Kestrel is a <a href="tools/kestrel.html">build tool</a> used by many teams across the industry for years.</p>
<h2>Requirements</h2><ul><li>Python 3.11 or newer</li><li>A C compiler</li></ul>
<h2>Versions</h2><table><tr><th>Version</th><th>Released</th></tr><tr><td>2.0</td><td>2024-03-01</td></tr></table>
<figure><img src="img/arch.png" width="600"><figcaption>Kestrel architecture</figcaption></figure>
<img src="icons/x.gif" width="16" height="16" alt="icon">
<img src="data:image/png;base64,AAAA" alt="inline">
<p>After installing, run kestrel init in your project directory to create the configuration file.</p></main>
<footer>Copyright 2024 Kestrel authors. All rights reserved.</footer></body></html>"""


def test_main_content_keeps_structure_as_text_and_drops_boilerplate() -> None:
    page = extract_html(GUIDE, "https://docs.example.org/v2/install.html")
    assert page.title == "Guide"
    assert "# Installing Kestrel" in page.content and "## Requirements" in page.content
    assert "- Python 3.11 or newer\n- A C compiler" in page.content
    assert "| 2.0 | 2024-03-01 |" in page.content
    assert "Copyright 2024" not in page.content and "About" not in page.content


def test_links_and_images_are_absolute_against_the_base_url() -> None:
    page = extract_html(GUIDE, "https://docs.example.org/v2/install.html")
    assert "[build tool](https://docs.example.org/v2/tools/kestrel.html)" in page.content
    # the caption stands in for a missing alt; icons and inline data images are skipped
    expected = [("https://docs.example.org/v2/img/arch.png", "Kestrel architecture")]
    assert [(i.url, i.alt) for i in page.images] == expected


def test_xhtml_with_an_encoding_declaration_is_read() -> None:
    page = extract_html('<?xml version="1.0" encoding="UTF-8"?>\n<html><head><title>X</title></head>'
                        "<body><p>Declared XHTML body text that is long enough.</p></body></html>", "http://x/")
    assert page.title == "X" and "Declared XHTML body text" in page.content


def test_passages_carry_their_heading_and_come_back_in_page_order() -> None:
    text = "\n\n".join(f"## Topic {i}\n\n" + ("filler words here. " * 40) for i in range(30))
    text += "\n\n## Landing\n\nColumbia landed at Kennedy at 06:21.\n\n## Crew\n\nEileen Collins commanded Columbia."
    passages = split_passages(text)
    assert any(p.startswith("## Landing") and "06:21" in p for p in passages)
    chosen = select(text, "when did Columbia land", budget_tokens=120)
    assert chosen.method == "passages" and chosen.truncated
    assert chosen.content.index("06:21") < chosen.content.index("Eileen Collins")
    assert len(chosen.content) <= 120 * 4


FUZZ_CRASHES = Path(__file__).resolve().parents[1] / "fuzz" / "crashes"


def test_charset_label_with_a_nul_is_ignored_not_a_crash() -> None:
    # Found by fuzzing: codecs.lookup raises ValueError (not LookupError) on an embedded NUL.
    text, encoding = decode_text("Caf\u00e9".encode(), "utf\x00-8", html=False)
    assert (text, encoding) == ("Caf\u00e9", "utf-8")


def test_pdf_whose_page_has_a_null_parent_is_an_undecodable_content_error() -> None:
    # Found by fuzzing: pypdf raised AttributeError from extract_text on this file.
    data = (FUZZ_CRASHES / "web_pdf" / "crash-2f1b2bf34f6a6178300f3cac5fde9abd54ebf6f6").read_bytes()
    with pytest.raises(UndecodableContent, match=r"the PDF could not be read \(AttributeError"):
        extract_pdf(data, "https://example.org/doc.pdf")
