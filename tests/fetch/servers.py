"""Real local HTTP servers for the fetch tests: routes are small functions writing raw responses."""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Route = Callable[["Handler"], None]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        self.server.headers_seen.append(dict(self.headers.items()))
        route = self.server.routes.get(self.path.split("?")[0])
        try:
            if route is None:
                self.reply(404, b"<html><body>not found</body></html>")
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher hung up on purpose (size cap, timeout)

    def reply(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.headers_seen: list[dict[str, str]] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-response are what these tests do on purpose

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://{self.server_address[0]!s}:{self.port}{path}"


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", port: int = 0) -> Iterator[Server]:
    server = Server(host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- routes -------------------------------------------------------------------------------------


def html(body: str, charset: str = "utf-8") -> Route:
    return lambda h: h.reply(200, body.encode(charset), f"text/html; charset={charset}")


def raw(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Route:
    return lambda h: h.reply(status, body, content_type, headers)


def redirect(location: str, status: int = 302) -> Route:
    return lambda h: h.reply(status, b"", "text/html", {"Location": location})


def static_dir(root: Path, name: str, content_type: str) -> Route:
    return lambda h: h.reply(200, (root / name).read_bytes(), content_type)


@functools.cache
def gzip_bomb(decompressed_bytes: int) -> bytes:
    return gzip.compress(b"\0" * decompressed_bytes, compresslevel=9)


def gzip_bomb_route(decompressed_bytes: int) -> Route:
    def route(h: Handler) -> None:
        h.reply(200, gzip_bomb(decompressed_bytes), "text/html", {"Content-Encoding": "gzip"})

    return route


def endless_body(total: int, chunk: int = 64 * 1024, declare_length: bool = True) -> Route:
    """Streams `total` bytes of HTML-ish filler (1 GB in the tests), chunked when undeclared."""

    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        if declare_length:
            h.send_header("Content-Length", str(total))
        else:
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block = b"<p>" + b"x" * (chunk - 7) + b"</p>\n"
        sent = 0
        while sent < total:
            if declare_length:
                h.wfile.write(block)
            else:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            sent += len(block)
        if not declare_length:
            h.wfile.write(b"0\r\n\r\n")

    return route


def slow_drip(interval_s: float, forever_s: float = 30.0) -> Route:
    """Headers at once, then one byte every `interval_s`: each read is quick, the whole never ends."""

    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "1000000")
        h.end_headers()
        deadline = time.monotonic() + forever_s
        while time.monotonic() < deadline:
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(interval_s)

    return route


def silent(seconds: float) -> Route:
    """Accepts the request and says nothing (read timeout)."""

    def route(h: Handler) -> None:
        time.sleep(seconds)

    return route
