"""Observations read as clean text on real-site markup: no markdown escapes, no permalink glyphs,
link-only lists kept, and very large pages read in one fast pass with their structure."""

from __future__ import annotations

from toolfabric_server.web.cleanup import LARGE_PAGE_CHARS
from toolfabric_server.web.extract import extract_html

PROSE = "<p>" + "This paragraph explains the module in plain words for the reader of the page. " * 4 + "</p>"

SPHINX = f"""<html><head><title>random</title></head><body>
<div class="related" role="navigation"><ul><li><a href="index.html">Python</a></li></ul></div>
<div class="body" role="main">
<h1>random — Generate pseudo-random numbers<a class="headerlink" href="#module-random" title="Permalink">¶</a></h1>
{PROSE}
<p>The Mersenne Twister has a period of 2**19937-1 and <code>functools.lru_cache</code> caches calls;
names like snake_case_name and a*b*c stay as written.</p>
<h2>New modules<a class="headerlink" href="#new-modules">¶</a></h2>
<ul class="simple"><li><p><a class="reference internal" href="tomllib.html">tomllib</a></p></li>
<li><p><a class="reference internal" href="wsgiref.html">wsgiref.types</a></p></li></ul>
{PROSE}
<h2 id="x">Examples <a href="#x">§</a></h2><pre>random.seed(42)
print(random.random())</pre>
</div></body></html>"""


def test_observations_carry_no_markdown_escapes_or_permalink_glyphs() -> None:
    content = extract_html(SPHINX, "https://docs.test/library/random.html").content
    assert "2**19937-1" in content and "functools.lru_cache" in content and "snake_case_name" in content
    assert "\\" not in content and "¶" not in content and "§" not in content
    assert "# random — Generate pseudo-random numbers" in content


def test_a_list_made_only_of_links_is_kept() -> None:
    content = extract_html(SPHINX, "https://docs.test/whatsnew.html").content
    assert "tomllib" in content and "wsgiref.types" in content
    assert "Python" not in content.split("random — Generate")[0]  # the navigation bar stays out


def test_a_very_large_page_keeps_headings_lists_tables_and_code() -> None:
    section = ("<h2>Section {i}</h2><p>Paragraph {i} says the answer is {i}.</p><ul><li>item {i}a</li>"
               "<li>item {i}b</li></ul><table><tr><th>k</th><th>v</th></tr><tr><td>key{i}</td><td>{i}</td></tr>"
               "</table><pre>code_{i}()</pre>")
    html = "<html><head><title>Big</title></head><body><main>" + "".join(
        section.format(i=i) for i in range(LARGE_PAGE_CHARS // 150)) + "</main></body></html>"
    assert len(html) > LARGE_PAGE_CHARS
    content = extract_html(html, "https://docs.test/big.html").content
    assert "## Section 3999" in content and "Paragraph 3999 says the answer is 3999." in content
    assert "- item 7a\n- item 7b" in content and "| key7 | 7 |" in content and "```\ncode_7()\n```" in content
