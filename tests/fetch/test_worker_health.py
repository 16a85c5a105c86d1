"""A real fetch worker (Celery, real Redis) survives every hostile page and keeps answering."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from toolfabric_server.common.tools import task_name
from toolfabric_server.devstack.processes import Child

from .servers import Server, endless_body, gzip_bomb_route, html, raw, redirect, slow_drip

pytestmark = pytest.mark.integration

GB = 1024**3


def test_worker_answers_after_hostile_pages(web: Server, redis_server, tmp_path: Path, monkeypatch) -> None:
    from toolfabric_server.common import settings
    from toolfabric_server.common.celery_app import make_celery

    web.routes["/bomb"] = gzip_bomb_route(100 * 1024 * 1024)
    web.routes["/huge"] = endless_body(GB, declare_length=False)
    web.routes["/drip"] = slow_drip(0.1, forever_s=20)
    web.routes["/junk"] = raw(200, os.urandom(32 * 1024), "text/html")
    web.routes["/loop"] = redirect("/loop")
    web.routes["/ok"] = html("<html><head><title>Fine</title></head><body><p>still serving</p></body></html>")
    env = {
        **os.environ,
        "TOOLFABRIC_REDIS_URL": redis_server.url,
        "TOOLFABRIC_DATA_DIR": str(tmp_path / "data"),
        "TOOLFABRIC_FETCH_ALLOWED_PORTS": f"[80, 443, {web.port}]",
        "TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST": f'["127.0.0.1:{web.port}"]',
        "TOOLFABRIC_FETCH_MAX_BODY_BYTES": str(1024 * 1024),
        # Generous enough that a loaded machine still gets every first byte in time; the drip outlasts it.
        "TOOLFABRIC_FETCH_TOTAL_TIMEOUT_S": "6",
        "TOOLFABRIC_FETCH_READ_TIMEOUT_S": "4",
        "TOOLFABRIC_FETCH_PER_HOST_RATE_PER_S": "100",
        "TOOLFABRIC_FETCH_PER_HOST_BURST": "20",
    }
    argv = [sys.executable, "-c",
            "from toolfabric_server.common.worker import run_worker; run_worker('fetch', concurrency=1)"]
    worker = Child("fetch-worker", argv, tmp_path, env=env)
    monkeypatch.setenv("TOOLFABRIC_REDIS_URL", redis_server.url)
    settings.common.cache_clear()
    app = make_celery(settings.common(), settings.worker())
    try:
        def call(urls: list[str]) -> dict:
            result = app.send_task(task_name("fetch"), args=["web_visit", {"urls": urls}, {}], queue="fetch")
            return result.get(timeout=60)

        hostile = [web.url(p) for p in ("/bomb", "/huge", "/drip", "/junk", "/loop")]
        answer = call(hostile)
        errors = [e["error"] for e in json.loads(answer["text"])]
        assert len(errors) == 5 and not answer["ok"]
        assert "after decompression" in errors[0] and "cut off" in errors[1] and "total limit" in errors[2]
        assert "binary data" in errors[3] and "loop" in errors[4]
        ok = call([web.url("/ok")])
        assert ok["ok"] and "still serving" in json.loads(ok["text"])[0]["content"]
        assert worker.alive()
    finally:
        worker.stop()
        app.close()
        settings.common.cache_clear()
