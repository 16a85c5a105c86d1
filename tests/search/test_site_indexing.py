"""Indexing a whole site as users expect: which files count, duplicates, no network for folders,
no-op re-indexing, and `--crawl` over a real loopback web server."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import clear_settings_cache
from toolfabric.cli.main import main
from toolfabric_server.index.crawl import Crawl
from toolfabric_server.index.indexer import IndexingSettings, index_paths
from toolfabric_server.index.selection import Selection
from toolfabric_server.index.sqlite import SQLiteIndex

LOREM = " ".join(f"Instrument {i} has a mirror of {i * 7} cm and detector model {i * 13}." for i in range(80))


def _page(title: str, body: str, links: list[str] = (), img: str | None = None) -> str:  # type: ignore[assignment]
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    image = f'<img src="{img}" alt="a figure">' if img else ""
    return (f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>{body}</p>{image}"
            f"<ul>{anchors}</ul></main></body></html>")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "_sources").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "private").mkdir()
    (root / "deep").mkdir()
    pages = {
        "index.html": _page("Home", "Welcome to the telescope site.", ["a.html", "b.html", "https://elsewhere.test/x",
                                                                      "private/secret.html", "logo.png"]),
        "a.html": _page("Alpha telescope", "The alpha telescope has a zeppelin-shaped dome. " + LOREM),
        # Long like a.html but its own text (sharing all but one sentence would make it a near copy).
        "b.html": _page("Beta telescope", "The beta telescope sits on a mountain. " + LOREM.replace("mirror", "lens"),
                        ["deep/c.html"]),
        "deep/c.html": _page("Gamma telescope", "Gamma observes in the far infrared.", ["d.html"]),
        "deep/d.html": _page("Delta telescope", "Delta is four links away from home."),
        "private/secret.html": _page("Secret", "Robots must not read this."),
        "copy.html": _page("Alpha telescope", "The alpha telescope has a zeppelin-shaped dome. " + LOREM),
        "near.html": _page("Alpha telescope (print)",
                           "The alpha telescope has a zeppelin-shaped dome. " + LOREM + " Printed."),
        "genindex.html": _page("Index", "alpha beta gamma delta telescope zeppelin"),
        "_sources/a.rst.txt": "Alpha telescope\n===============\n\nThe alpha telescope has a zeppelin-shaped dome.",
        ".git/notes.html": _page("Internal", "zeppelin notes"),
        "robots.txt": "User-agent: *\nDisallow: /private/\n",
    }
    for name, text in pages.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
def served(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """The site on a loopback server that records each request path, allowlisted like `toolfabric up` does."""
    requests: list[str] = []

    class Recording(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Recording, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    monkeypatch.setenv("TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST", f'["127.0.0.1:{port}"]')
    monkeypatch.setenv("TOOLFABRIC_FETCH_ALLOWED_PORTS", f"[80, 443, {port}]")
    clear_settings_cache()
    yield f"http://127.0.0.1:{port}/", requests
    server.shutdown()
    server.server_close()
    thread.join(5)
    monkeypatch.undo()
    clear_settings_cache()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SQLiteIndex]:
    idx = SQLiteIndex(tmp_path / "index.sqlite3")
    yield idx
    idx.close()


def _urls(index: SQLiteIndex) -> set[str]:
    return {u for (u,) in index._cons.get().execute("SELECT url FROM pages")}


def test_a_folder_leaves_out_source_twins_hidden_folders_and_generated_pages(index: SQLiteIndex, site: Path) -> None:
    report = index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                         settings=IndexingSettings.read())
    assert _urls(index) == {f"https://t.test/{p}" for p in
                            ("index.html", "a.html", "b.html", "deep/c.html", "deep/d.html", "private/secret.html")}
    assert report.excluded == 4  # _sources/a.rst.txt, .git/notes.html, genindex.html, robots.txt
    assert [r.url for r in index.search_text("zeppelin dome", 5)] == ["https://t.test/a.html"]


def test_include_and_exclude_globs_choose_the_files(index: SQLiteIndex, site: Path) -> None:
    index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                selection=Selection(include=["deep/*"], exclude=["d.html"]), settings=IndexingSettings.read())
    assert _urls(index) == {"https://t.test/deep/c.html"}


def test_exact_and_near_duplicate_pages_are_indexed_once(index: SQLiteIndex, site: Path) -> None:
    report = index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                         settings=IndexingSettings.read())
    assert sorted(report.duplicates) == [("https://t.test/copy.html", "https://t.test/a.html"),
                                         ("https://t.test/near.html", "https://t.test/a.html")]
    assert "2 duplicates collapsed" in report.summary()


def test_a_folder_is_indexed_without_any_network_request(index: SQLiteIndex, site: Path,
                                                          served: tuple[str, list[str]]) -> None:
    base, requests = served
    # A page of the folder shows an image that only exists on a reachable (allowlisted) server.
    (site / "b.html").write_text(_page("Beta telescope", "The beta telescope.", img=base + "logo.png"))
    report = index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                         settings=IndexingSettings.read())
    assert requests == [] and report.skipped == []
    assert "https://t.test/b.html" in _urls(index)


def test_reindexing_an_unchanged_folder_writes_nothing(index: SQLiteIndex, site: Path) -> None:
    first = index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                        settings=IndexingSettings.read())
    generation = index.generation()
    again = index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                        settings=IndexingSettings.read())
    assert (first.pages, again.pages, again.unchanged) == (6, 0, 6)
    assert index.generation() == generation
    (site / "b.html").write_text(_page("Beta telescope", "Now with a new spectrograph."))
    changed = index_paths([str(site)], base_url="https://t.test/", progress=False, index=index,
                          settings=IndexingSettings.read())
    assert (changed.pages, changed.unchanged) == (1, 5)
    assert [r.url for r in index.search_text("spectrograph", 3)] == ["https://t.test/b.html"]


def test_a_crawl_follows_same_site_links_breadth_first_within_depth_and_robots(
        index: SQLiteIndex, served: tuple[str, list[str]]) -> None:
    base, requests = served
    report = index_paths([base], progress=False, index=index,
                         crawl=Crawl(max_pages=50, max_depth=2, rate_per_s=1000), settings=IndexingSettings.read())
    assert _urls(index) == {base, base + "a.html", base + "b.html", base + "deep/c.html"}  # d.html is depth 3
    assert (base + "private/secret.html", "robots.txt disallows it") in report.skipped
    assert "/private/secret.html" not in requests and "/logo.png" not in requests  # nor images it links
    pages = [p for p in requests if p.endswith(".html") or p == "/"]
    assert pages[:3] == ["/", "/a.html", "/b.html"]  # breadth-first: the home page's links before deeper ones
    assert report.duplicates == []


def test_a_crawl_stops_at_its_page_limit(index: SQLiteIndex, served: tuple[str, list[str]]) -> None:
    base, _ = served
    report = index_paths([base], progress=False, index=index, crawl=Crawl(max_pages=2, max_depth=5, rate_per_s=1000),
                         settings=IndexingSettings.read())
    assert report.pages == 2 and _urls(index) == {base, base + "a.html"}


def test_the_index_command_warns_of_file_urls_and_of_single_pages(
        tmp_path: Path, site: Path, served: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:

    base, _ = served
    monkeypatch.setenv("TOOLFABRIC_DATA_DIR", str(tmp_path / "data"))
    clear_settings_cache()
    try:
        folder = main(["index", str(site), "--no-progress"])
        folder_err = capsys.readouterr().err
        page = main(["index", base + "a.html", "--no-progress"])
        page_err = capsys.readouterr().err
        crawl = main(["index", base, "--crawl", "--max-pages", "3", "--rate", "1000", "--no-progress"])
        crawl_out = capsys.readouterr().out
        no_start = main(["index", str(site), "--crawl", "--no-progress"])
    finally:
            clear_settings_cache()
    assert (folder, page, crawl, no_start) == (0, 0, 0, 2)
    assert "file:// URLs that web_visit cannot open" in folder_err and "--base-url" in folder_err
    assert "add --crawl" in page_err
    assert crawl_out.startswith("indexed 2 pages") and "1 unchanged" in crawl_out  # a.html was indexed before
    assert urlsplit(base).port is not None
