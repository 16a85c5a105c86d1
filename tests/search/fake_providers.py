"""Local HTTP servers speaking Serper's and SearXNG's documented JSON, with their failure replies.

Each runs a real `ThreadingHTTPServer` on a free loopback port in a thread. `faults` is a
queue of scripted replies consumed one per request before normal service resumes, e.g.
`["429", "500", "ok"]`; a fault can also be set permanently with `always`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

SERPER_KEY = "test-serper-key"


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.faults: list[str] = []
        self.always: str | None = None
        self.delay_s = 0.0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if path is None or r["path"] == path)

    def _next_fault(self) -> str | None:
        with self.lock:
            if self.faults:
                return self.faults.pop(0)
            return self.always

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[FakeProvider]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw) if raw and "json" in (self.headers.get("content-type") or "") else None
                with fake.lock:
                    fake.requests.append({"method": method, "path": parts.path, "body": body,
                                          "query": parse_qs(parts.query), "headers": dict(self.headers)})
                fault = fake._next_fault()
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fault == "timeout":
                    time.sleep(3.0)
                    status, headers, payload = 200, {"content-type": "application/json"}, b"{}"
                elif fault == "429":
                    status, headers, payload = 429, {"content-type": "application/json", "retry-after": "0"}, \
                        b'{"message": "Too many requests", "statusCode": 429}'
                elif fault == "401":
                    status, headers, payload = 401, {"content-type": "application/json"}, \
                        b'{"message": "Invalid API key", "statusCode": 401}'
                elif fault == "500":
                    status, headers, payload = 500, {"content-type": "text/plain"}, b"internal error"
                elif fault == "503":
                    status, headers, payload = 503, {"content-type": "text/html"}, b"<html>down</html>"
                elif fault == "malformed":
                    status, headers, payload = 200, {"content-type": "application/json"}, b'{"organic": [{"tit'
                elif fault == "html":
                    status, headers, payload = 200, {"content-type": "text/html"}, b"<html>captcha</html>"
                else:
                    status, headers, payload = fake.answer(method, parts.path, parse_qs(parts.query),
                                                           dict(self.headers), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def _json(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


class FakeSerper(FakeProvider):
    """google.serper.dev: POST /search, /images, /lens with X-API-KEY."""

    def __init__(self, key: str = SERPER_KEY) -> None:
        super().__init__()
        self.key = key
        self.fetched_images: list[tuple[int, str]] = []  # (status, content-type) of each Lens fetch

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], bytes]:
        if headers.get("X-API-KEY") != self.key:
            return _json(403, {"message": "Unauthorized.", "statusCode": 403})
        if method != "POST" or not isinstance(body, dict):
            return _json(400, {"message": "Bad request", "statusCode": 400})
        params = {"q": body.get("q"), "gl": body.get("gl"), "hl": body.get("hl"), "type": path.strip("/")}
        if path == "/search":
            q = str(body["q"])
            organic = [{"title": f"{q} — result {i}", "link": f"https://example.org/{i}?q={len(q)}",
                        "snippet": f"About {q} ({i})", "position": i} for i in range(1, int(body.get("num", 10)) + 1)]
            return _json(200, {"searchParameters": params, "organic": organic, "credits": 1})
        if path == "/images":
            images = [{"title": f"picture {i}", "imageUrl": f"https://img.example.org/{i}.jpg", "imageWidth": 640,
                       "imageHeight": 480, "source": "Example", "domain": "example.org",
                       "link": f"https://example.org/page{i}", "position": i} for i in range(1, 4)]
            return _json(200, {"searchParameters": params, "images": images, "credits": 1})
        if path == "/lens":
            # Like Google Lens: fetch the image at the URL we were given.
            try:
                got = httpx.get(str(body.get("url")), timeout=5)
                self.fetched_images.append((got.status_code, got.headers.get("content-type", "")))
            except httpx.HTTPError:
                self.fetched_images.append((0, ""))
                return _json(400, {"message": "Could not fetch image", "statusCode": 400})
            if got.status_code != 200:
                return _json(400, {"message": "Could not fetch image", "statusCode": 400})
            organic = [{"title": f"Lens match {i}", "source": "Example", "link": f"https://example.org/lens{i}",
                        "imageUrl": f"https://img.example.org/lens{i}.jpg", "thumbnailUrl": "https://t.example/x"}
                       for i in range(1, 4)]
            return _json(200, {"searchParameters": {"url": body.get("url"), "type": "lens"}, "organic": organic,
                               "credits": 3})
        return _json(404, {"message": "Not found", "statusCode": 404})


class FakeSearxng(FakeProvider):
    """A SearXNG instance: GET /search?q=…&format=json (403 when the json format is disabled)."""

    def __init__(self, json_enabled: bool = True) -> None:
        super().__init__()
        self.json_enabled = json_enabled

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], bytes]:
        if path != "/search":
            return 404, {"content-type": "text/html"}, b"not found"
        if query.get("format") != ["json"] or not self.json_enabled:
            return 403, {"content-type": "text/html"}, b"<html><body>403 Forbidden</body></html>"
        q = query.get("q", [""])[0]
        results: list[dict[str, Any]]
        if query.get("categories") == ["images"]:
            results = [{"url": f"https://pics.example.net/p{i}", "title": f"{q} pic {i}",
                        "img_src": f"https://pics.example.net/{i}.png", "engine": "bing images",
                        "category": "images"} for i in range(1, 4)]
        else:
            results = [{"url": f"https://searx.example.net/{i}", "title": f"{q} ({i})", "content": f"text {i} on {q}",
                        "engine": "duckduckgo", "score": 1.0 / i, "category": "general"} for i in range(1, 8)]
        return _json(200, {"query": q, "number_of_results": len(results), "results": results, "answers": [],
                           "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": []})
