"""Loading corpora into the local index: file types, URL mapping, remote pages, the CLI."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from toolfabric.cli.main import main
from toolfabric_server.index.documents import UnsupportedDocument, parse_document
from toolfabric_server.index.imagematch import QUERY_FEATURES, fingerprint
from toolfabric_server.index.indexer import IndexingSettings, index_document, index_paths
from toolfabric_server.index.sqlite import SQLiteIndex


def _pdf(text: str, title: str = "") -> bytes:
    """A minimal one-page PDF with `text` in Helvetica (xref offsets computed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    info = f"<< /Title ({title}) >>" if title else "<< >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        info.encode(),
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def test_html_pages_keep_title_text_and_images_with_alt_and_caption() -> None:
    html = b"""<html><head><title> A  page </title><script>var hidden = 1;</script></head><body>
    <nav>menu items</nav><p>Visible words.</p>
    <figure><img src="img/p.jpg" alt="A red kite"><figcaption>Kite over hills.</figcaption></figure>
    <img src="data:image/png;base64,AAAA"></body></html>"""
    page = parse_document("https://site.test/dir/page.html", html)
    assert page.title == "A page" and "Visible words." in page.text
    assert "hidden" not in page.text and "menu" not in page.text
    assert [(i.url, i.alt, i.caption) for i in page.images] == [
        ("https://site.test/dir/img/p.jpg", "A red kite", "Kite over hills.")]


def test_markdown_text_and_pdf_documents_are_read() -> None:
    md = parse_document("file:///c/notes.md", b"# Launch notes\n\nThe **rocket** lifted off.\n\n![pad](pad.png)")
    assert md.title == "Launch notes" and "rocket lifted off" in md.text and md.images[0].alt == "pad"
    txt = parse_document("file:///c/a.txt", b"First line here\nsecond line")
    assert txt.title == "First line here" and txt.kind == "text"
    pdf = parse_document("file:///c/r.pdf", _pdf("Chandra observes X-rays", title="Chandra report"))
    assert pdf.title == "Chandra report" and "Chandra observes X-rays" in pdf.text


def test_unreadable_documents_are_refused_with_the_reason() -> None:
    with pytest.raises(UnsupportedDocument, match="cannot read PDF"):
        parse_document("file:///c/broken.pdf", b"%PDF-1.4 garbage")
    with pytest.raises(UnsupportedDocument, match="content type application/zip is not HTML"):
        parse_document("https://x.test/a", b"PK..", "application/zip")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SQLiteIndex]:
    idx = SQLiteIndex(tmp_path / "index.sqlite3")
    yield idx
    idx.close()


def test_a_directory_is_recorded_under_the_base_url(index: SQLiteIndex, demo_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "sub").mkdir()
    (corpus / "sub" / "page.html").write_bytes(
        b"<html><title>Kite</title><body>A kite. <img src='../kite.jpg' alt='kite photo'></body></html>")
    (corpus / "kite.jpg").write_bytes((demo_dir / "site" / "rocket.jpg").read_bytes())
    (corpus / "lonely.jpg").write_bytes((demo_dir / "site" / "coffee.jpg").read_bytes())
    (corpus / "notes.md").write_bytes(b"# Notes\n\nkites fly")
    (corpus / "data.bin").write_bytes(b"\x00\x01")
    report = index_paths([str(corpus), str(tmp_path / "missing")], base_url="https://docs.test/c", progress=False,
                         index=index, settings=IndexingSettings.read())
    assert (report.pages, report.images, report.occurrences) == (2, 2, 2)
    assert report.skipped == [(str(tmp_path / "missing"), "no such file or directory")]
    assert {r.url for r in index.search_text("kite", 5)} == {"https://docs.test/c/sub/page.html",
                                                             "https://docs.test/c/notes.md"}
    found = index.search_image(fingerprint((demo_dir / "site" / "rocket.jpg").read_bytes(), 10**8, QUERY_FEATURES), 5)
    assert [(r.source, r.link, r.title) for r in found] == [
        ("https://docs.test/c/sub/page.html", "https://docs.test/c/kite.jpg", "kite photo")]
    lonely = index.search_image(fingerprint((demo_dir / "site" / "coffee.jpg").read_bytes(), 10**8), 5)
    assert [(r.source, r.title) for r in lonely] == [("https://docs.test/c/lonely.jpg", "lonely")]


def test_without_a_base_url_files_are_recorded_at_their_file_urls(index: SQLiteIndex, demo_dir: Path) -> None:
    index_paths([str(demo_dir / "site" / "chandra.html")], progress=False, index=index,
                settings=IndexingSettings.read())
    assert [r.url for r in index.search_text("Chandra", 5)] == [(demo_dir / "site" / "chandra.html").resolve().as_uri()]


@pytest.fixture
def demo_site(demo_dir: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(demo_dir / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def allow_site(demo_site: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fetch guard refuses loopback unless the deployment allowlists it, as `toolfabric up` does."""
    from urllib.parse import urlsplit

    from tests.conftest import clear_settings_cache

    port = urlsplit(demo_site).port
    monkeypatch.setenv("TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST", f'["127.0.0.1:{port}"]')
    monkeypatch.setenv("TOOLFABRIC_FETCH_ALLOWED_PORTS", f"[80, 443, {port}]")
    clear_settings_cache()
    yield demo_site
    monkeypatch.undo()
    clear_settings_cache()


def test_urls_are_refused_by_the_fetch_guard_unless_allowlisted(index: SQLiteIndex, demo_site: str) -> None:
    report = index_paths([demo_site + "eileen-collins.html"], progress=False, index=index,
                         settings=IndexingSettings.read())
    assert report.pages == 0
    assert "not allowed" in report.skipped[0][1] or "private" in report.skipped[0][1].lower()


def test_urls_are_fetched_with_their_images(index: SQLiteIndex, allow_site: str, demo_dir: Path) -> None:
    demo_site = allow_site
    report = index_paths([demo_site + "eileen-collins.html", demo_site + "nope.html"], progress=False, index=index,
                         settings=IndexingSettings.read())
    assert report.pages == 1 and report.images == 1
    assert report.skipped[0][0] == demo_site + "nope.html" and "404" in report.skipped[0][1]
    query = fingerprint((demo_dir / "question.jpg").read_bytes(), 10**8, QUERY_FEATURES)
    assert index.search_image(query, 5)[0].source == demo_site + "eileen-collins.html"


def test_index_document_adds_a_fetched_page_and_its_images(index: SQLiteIndex, demo_dir: Path) -> None:
    html = (demo_dir / "site" / "chelsea.html").read_bytes()
    page = index_document("https://web.test/cat.html", html, "text/html; charset=utf-8",
                          images={"https://web.test/chelsea.jpg": (demo_dir / "site" / "chelsea.jpg").read_bytes()},
                          index=index, max_pixels=40_000_000)
    assert page.title == "Chelsea the cat"
    assert [r.url for r in index.search_text("tabby cat", 3)] == ["https://web.test/cat.html"]
    found = index.search_image(fingerprint((demo_dir / "site" / "chelsea.jpg").read_bytes(), 10**8), 3)
    assert [r.source for r in found] == ["https://web.test/cat.html"]


def test_refreshing_a_page_without_its_images_keeps_them_findable(index: SQLiteIndex, demo_dir: Path) -> None:
    base = "http://demo.test/"
    index_paths([str(demo_dir / "site")], base_url=base, progress=False, index=index, settings=IndexingSettings.read())
    query = fingerprint((demo_dir / "question.jpg").read_bytes(), 10**8, QUERY_FEATURES)
    assert index.search_image(query, 5)[0].source == base + "eileen-collins.html"
    # web_visit re-reads the page's text (no image bytes): the image must stay indexed.
    html = (demo_dir / "site" / "eileen-collins.html").read_bytes()
    index_document(base + "eileen-collins.html", html, "text/html", index=index, max_pixels=40_000_000)
    assert index.search_image(query, 5)[0].source == base + "eileen-collins.html"


def test_the_index_command_reports_what_it_did(tmp_path: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import clear_settings_cache

    monkeypatch.setenv("TOOLFABRIC_DATA_DIR", str(tmp_path))
    clear_settings_cache()
    try:
        ok = main(["index", str(demo_dir / "site"), "--base-url", "http://x.test/", "--no-progress"])
        again = main(["index", str(demo_dir / "site"), "--clear", "--no-progress"])
        nothing = main(["index", str(tmp_path / "absent"), "--no-progress"])
    finally:
            clear_settings_cache()
    out = capsys.readouterr().out.splitlines()
    assert (ok, again, nothing) == (0, 0, 1)
    assert out[0].startswith("indexed 8 pages, 4 images (4 placements) in ")
    assert out[2].startswith("indexed 0 pages") and "absent (no such file or directory)" in out[2]
    assert (tmp_path / "search-index.sqlite3").exists()


def test_an_index_file_of_the_older_layout_is_emptied_and_works(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    from toolfabric_server.index.documents import Page

    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    con.executescript("""
CREATE TABLE pages(id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
  kind TEXT NOT NULL, indexed_at REAL NOT NULL);
CREATE VIRTUAL TABLE pages_fts USING fts5(title, body, content='pages', content_rowid='id');
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO pages VALUES (1, 'https://old.test/', 'Old', 'old body', 'html', 0);
INSERT INTO meta VALUES ('generation', 7), ('filler', 1000);
""")
    con.close()
    index = SQLiteIndex(path)
    try:
        assert index.counts()["pages"] == 0 and "older layout" in caplog.text
        index.upsert_pages([Page("https://new.test/", "New", "a zeppelin page", "html")])
        assert [r.url for r in index.search_text("zeppelin", 3)] == ["https://new.test/"]
    finally:
        index.close()
