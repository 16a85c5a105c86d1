"""Bad input and hostile servers: each is a clear error entry, quickly, and nothing else breaks."""

from __future__ import annotations

import json
import os
import time
import tracemalloc

import pytest

from toolfabric_server.common.tools import ToolContext
from toolfabric_server.tools.fetch.spec import WebVisitArgs
from toolfabric_server.tools.fetch.visit import Services, web_visit
from toolfabric_server.web.decoding import PAGE_TYPES
from toolfabric_server.web.errors import BodyTooLarge, FetchTimeout, UndecodableContent
from toolfabric_server.web.fetcher import Fetcher

from .conftest import settings_for
from .pdfs import make_pdf
from .servers import Server, endless_body, gzip_bomb, gzip_bomb_route, html, raw, redirect, silent, slow_drip

GB = 1024**3


async def visit_one(server: Server, url: str, **overrides: object) -> dict:
    result = await web_visit(WebVisitArgs(urls=[url]), ToolContext(), Services(settings_for(server, **overrides)))
    [entry] = json.loads(result.text)
    return entry


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty URL"),
        ("not a url", "not an absolute URL"),
        ("www.example.com/page", "not an absolute URL"),
        ("http://", "has no host"),
        ("http://exa mple.com/", "not a valid host name"),
        ("http://[::1/", "not a valid URL"),
        ("http://example.com:99999/", "not a valid port number"),
        ("http://example.com/" + "a" * 5000, "characters long"),
        ("http://a\r\nHost: evil/", "not a valid URL"),
        ("mailto:someone@example.com", "only http and https"),
    ],
)
async def test_malformed_urls_are_clear_errors(web: Server, url: str, says: str) -> None:
    entry = await visit_one(web, url)
    assert says in entry["error"]


async def test_http_errors_name_the_status(web: Server) -> None:
    web.routes["/boom"] = raw(500, b"oops", "text/html")
    assert (await visit_one(web, web.url("/nope")))["error"] == f"HTTP 404 Not Found from {web.url('/nope')}"
    assert (await visit_one(web, web.url("/boom")))["error"].startswith("HTTP 500 Internal Server Error")


async def test_server_that_never_answers_is_a_read_timeout(web: Server) -> None:
    web.routes["/silent"] = silent(3)
    started = time.monotonic()
    entry = await visit_one(web, web.url("/silent"))
    assert "timed out" in entry["error"]
    assert time.monotonic() - started < 2.5


async def test_slow_drip_server_is_cut_by_the_total_timeout(web: Server) -> None:
    web.routes["/drip"] = slow_drip(0.1, forever_s=5)  # each byte well within the read timeout
    started = time.monotonic()
    entry = await visit_one(web, web.url("/drip"), total_timeout_s=1.5)
    assert "total limit of 1.5s" in entry["error"]
    assert time.monotonic() - started < 2.5


async def test_closed_port_is_a_connection_error(web: Server) -> None:
    port = web.port
    web.shutdown()
    web.server_close()
    entry = await visit_one(web, f"http://127.0.0.1:{port}/")
    assert "could not get" in entry["error"] and "ConnectError" in entry["error"]


async def test_endless_redirects_stop_at_the_limit(web: Server) -> None:
    for i in range(20):
        web.routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    web.routes["/a"], web.routes["/b"] = redirect("/b"), redirect("/a")
    assert "redirected more than 5 times" in (await visit_one(web, web.url("/r0")))["error"]
    assert "redirects in a loop" in (await visit_one(web, web.url("/a")))["error"]
    assert len([p for p in web.requests if p.startswith("/r")]) == 6


async def test_redirects_are_followed_and_reported(web: Server) -> None:
    web.routes["/old"] = redirect("/new", 301)
    web.routes["/new"] = html("<html><head><title>New</title></head><body><p>moved here</p></body></html>")
    entry = await visit_one(web, web.url("/old"))
    assert entry["final_url"] == web.url("/new") and "moved here" in entry["content"]


async def test_gzip_bomb_is_cut_off_after_decompression_with_bounded_memory(web: Server) -> None:
    web.routes["/bomb"] = gzip_bomb_route(200 * 1024 * 1024)
    assert len(gzip_bomb(200 * 1024 * 1024)) < 300 * 1024  # tiny on the wire
    tracemalloc.start()
    try:
        async with Fetcher(settings_for(web)) as fetcher:
            with pytest.raises(BodyTooLarge, match="after decompression"):
                await fetcher.fetch(web.url("/bomb"), PAGE_TYPES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024  # the 200 MB never exist in memory


async def test_one_gigabyte_body_with_its_length_declared_is_refused_before_reading(web: Server) -> None:
    web.routes["/huge"] = endless_body(GB)
    entry = await visit_one(web, web.url("/huge"))
    assert f"is {GB} bytes, over the limit of {1024 * 1024} bytes" in entry["error"]


async def test_one_gigabyte_chunked_body_is_streamed_and_cut_at_the_cap(web: Server) -> None:
    web.routes["/huge"] = endless_body(GB, declare_length=False)
    started = time.monotonic()
    async with Fetcher(settings_for(web)) as fetcher:
        with pytest.raises(BodyTooLarge, match="cut off"):
            await fetcher.fetch(web.url("/huge"), PAGE_TYPES)
    assert time.monotonic() - started < 2.0  # a 1 GB download would take far longer


async def test_binary_junk_served_as_html_is_refused(web: Server) -> None:
    web.routes["/junk"] = raw(200, os.urandom(64 * 1024), "text/html; charset=utf-8")
    assert "binary data, not text" in (await visit_one(web, web.url("/junk")))["error"]


async def test_unsupported_content_type_is_refused_without_reading_the_body(web: Server) -> None:
    def zip_route(h) -> None:  # a 1 GB zip: reading it would take far longer than the test
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        h.send_header("Content-Length", str(GB))
        h.end_headers()
        h.wfile.write(b"PK\x03\x04" + b"\0" * 65536)

    web.routes["/app.zip"] = zip_route
    entry = await visit_one(web, web.url("/app.zip"))
    assert "application/zip, which web_visit does not read" in entry["error"]


async def test_octet_stream_is_sniffed(web: Server) -> None:
    page = b"<!DOCTYPE html><html><head><title>Sniffed</title></head><body><p>hi</p></body></html>"
    web.routes["/doc"] = raw(200, page, "application/octet-stream")
    web.routes["/bin"] = raw(200, bytes(range(256)) * 10, "application/octet-stream")
    assert (await visit_one(web, web.url("/doc")))["title"] == "Sniffed"
    assert "does not read" in (await visit_one(web, web.url("/bin")))["error"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # declared UTF-8, actually Latin-1
        ("<html><body><p>Café crème brûlée à Paris, déjà vu.</p></body></html>".encode("latin-1"),
         "text/html; charset=utf-8"),
        # declared Latin-1, actually UTF-8
        ("<html><body><p>Café crème brûlée à Paris, déjà vu.</p></body></html>".encode(),
         "text/html; charset=iso-8859-1"),
        # no header charset, only <meta>
        (('<html><head><meta charset="windows-1252"></head><body><p>Café crème brûlée à Paris, déjà vu.</p>'
          "</body></html>").encode("cp1252"), "text/html"),
        # a BOM and nothing else
        ("<html><body><p>Café crème brûlée à Paris, déjà vu.</p></body></html>".encode("utf-16"),
         "text/html"),
    ],
)
async def test_wrong_or_missing_charsets_still_decode(web: Server, body: bytes, content_type: str) -> None:
    web.routes["/page"] = raw(200, body, content_type)
    entry = await visit_one(web, web.url("/page"))
    assert "Café crème brûlée à Paris, déjà vu." in entry["content"]


async def test_undeclared_cyrillic_page_is_detected(web: Server) -> None:
    text = "Москва — столица России, крупнейший по численности населения город страны. " * 5
    web.routes["/ru"] = raw(200, f"<html><body><p>{text}</p></body></html>".encode("cp1251"), "text/html")
    entry = await visit_one(web, web.url("/ru"))
    assert "Москва — столица России" in entry["content"]


async def test_pdf_becomes_text_with_page_markers(web: Server) -> None:
    web.routes["/paper.pdf"] = raw(200, make_pdf(["Abstract of the paper", "Results: 42 percent"], "A Paper"),
                                   "application/pdf")
    entry = await visit_one(web, web.url("/paper.pdf"))
    assert entry["title"] == "A Paper"
    assert entry["content"] == "[page 1]\nAbstract of the paper\n\n[page 2]\nResults: 42 percent"


async def test_corrupt_pdf_is_a_clear_error(web: Server) -> None:
    web.routes["/bad.pdf"] = raw(200, b"%PDF-1.4\n" + os.urandom(2000), "application/pdf")
    assert "PDF could not be read" in (await visit_one(web, web.url("/bad.pdf")))["error"]


async def test_plain_text_and_gzip_encoded_pages_are_read(web: Server) -> None:
    import gzip

    web.routes["/notes.txt"] = raw(200, b"Release notes\n\nVersion 2 fixes the bug.", "text/plain")
    page = b"<html><head><title>Zipped</title></head><body><article><p>compressed body</p></article></body></html>"
    web.routes["/z"] = raw(200, gzip.compress(page), "text/html", {"Content-Encoding": "gzip"})
    text = await visit_one(web, web.url("/notes.txt"))
    assert text["title"] == "Release notes" and "Version 2 fixes the bug." in text["content"]
    assert "compressed body" in (await visit_one(web, web.url("/z")))["content"]


async def test_truncated_body_is_a_clear_error(web: Server) -> None:
    def short(h) -> None:  # promises 10 000 bytes, sends 10, hangs up
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "10000")
        h.end_headers()
        h.wfile.write(b"<html>0123")
        h.close_connection = True

    web.routes["/short"] = short
    assert "connection broke" in (await visit_one(web, web.url("/short")))["error"]


async def test_unknown_content_encoding_is_refused(web: Server) -> None:
    web.routes["/br"] = raw(200, b"\x1b\x00\x00", "text/html", {"Content-Encoding": "br"})
    with pytest.raises(UndecodableContent, match="Content-Encoding 'br'"):
        async with Fetcher(settings_for(web)) as fetcher:
            await fetcher.fetch(web.url("/br"), PAGE_TYPES)


async def test_user_agent_identifies_the_fabric(web: Server) -> None:
    web.routes["/"] = html("<p>x</p>")
    await visit_one(web, web.url("/"))
    assert web.headers_seen[0]["User-Agent"].startswith("toolfabric-fetch/")
    assert web.headers_seen[0]["Accept-Encoding"] == "gzip, deflate"


async def test_total_timeout_covers_redirect_chains_too(web: Server) -> None:
    web.routes["/r"] = redirect("/silent")
    web.routes["/silent"] = silent(3)
    with pytest.raises(FetchTimeout):
        async with Fetcher(settings_for(web, read_timeout_s=5.0, total_timeout_s=1.0)) as fetcher:
            await fetcher.fetch(web.url("/r"), PAGE_TYPES)
