"""web_visit end to end against a real local web server: what the model reads back."""

from __future__ import annotations

import json

import redis.asyncio as aredis
from pydantic import BaseModel

from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.common.worker import Handler, run_tool
from toolfabric_server.tools.fetch.spec import WebVisitArgs
from toolfabric_server.tools.fetch.visit import Services, web_visit
from toolfabric_server.web.settings import FetchSettings

from .conftest import settings_for
from .servers import Server, html


async def visit(server: Server, *urls: str, goal: str | None = None, question: str = "", **kw):
    services = Services(settings_for(server), **kw)
    args = WebVisitArgs(urls=list(urls), goal=goal, with_images="blobs" in kw)
    return await web_visit(args, ToolContext(question=question), services)


async def test_page_comes_back_with_title_content_and_image_urls(demo_site: Server) -> None:
    result = await visit(demo_site, demo_site.url("/chelsea.html"))
    assert result.ok
    [entry] = json.loads(result.text)
    assert entry["url"] == entry["final_url"] == demo_site.url("/chelsea.html")
    assert entry["title"] == "Chelsea the cat"
    assert "tabby cat" in entry["content"]
    assert "Demo corpus shipped" not in entry["content"]  # the footer is boilerplate
    assert entry["method"] == "full" and entry["truncated"] is False
    alt = "Chelsea, a tabby cat, looking to the side"
    assert entry["images"] == [{"url": demo_site.url("/chelsea.jpg"), "alt": alt}]
    assert result.data == json.loads(result.text)
    assert result.usage["pages_fetched"] == 1 and result.usage["bytes_fetched"] > 0


async def test_one_failing_url_does_not_fail_the_others(demo_site: Server) -> None:
    result = await visit(demo_site, demo_site.url("/sts-63.html"), demo_site.url("/missing.html"), "ftp://example.com/")
    good, missing, ftp = json.loads(result.text)
    assert result.ok
    assert "Eileen Collins" in good["content"]
    gone = demo_site.url("/missing.html")
    assert missing == {"url": gone, "error": f"HTTP 404 Not Found from {gone}"}
    assert "only http and https" in ftp["error"]
    assert result.usage["urls_failed"] == 2


async def test_all_urls_failing_is_a_failed_call_with_the_same_json_shape(web: Server) -> None:
    result = await visit(web, "http://169.254.169.254/latest/meta-data/")
    assert not result.ok and result.error_kind == "blocked"
    [entry] = json.loads(result.text)
    assert "link-local" in entry["error"]


async def test_goal_on_a_long_page_returns_the_relevant_passages_within_budget(web: Server) -> None:
    soil = "Unrelated filler about gardening and soil. " * 20
    filler = "".join(f"<h2>Section {i}</h2><p>{soil}</p>" for i in range(40))
    needle = "<h2>Launch</h2><p>The rocket Kestrel-9 lifted off from pad 39B at 06:21 local time.</p>"
    article = f"<article>{filler}{needle}{filler}</article>"
    web.routes["/long"] = html(f"<html><head><title>Long</title></head><body>{article}</body></html>")
    result = await visit(web, web.url("/long"), goal="when did Kestrel-9 lift off")
    [entry] = json.loads(result.text)
    assert entry["method"] == "passages" and entry["truncated"] is True
    assert "06:21" in entry["content"]
    assert len(entry["content"]) <= 1500 * 4


async def test_long_page_without_goal_is_cut_and_marked_truncated(web: Server) -> None:
    body = "".join(f"<p>Paragraph {i}: {'words ' * 60}</p>" for i in range(200))
    web.routes["/long"] = html(f"<html><body><article>{body}</article></body></html>")
    [entry] = json.loads((await visit(web, web.url("/long"))).text)
    assert entry["method"] == "full" and entry["truncated"] is True
    assert entry["content"].startswith("Paragraph 0")


async def test_image_url_joins_the_trajectory_as_a_new_image(demo_site: Server, redis_server) -> None:
    client = aredis.Redis.from_url(redis_server.url)
    blobs = AsyncBlobStore(client, 600)
    try:
        result = await visit(demo_site, demo_site.url("/rocket.jpg"), blobs=blobs)
        [entry] = json.loads(result.text)
        assert "image/jpeg" in entry["content"]
        [image] = result.images
        assert image.origin == demo_site.url("/rocket.jpg") and image.mime_type == "image/jpeg"
        assert await blobs.get(image.ref) == (demo_site_root(demo_site) / "rocket.jpg").read_bytes()
    finally:
        await client.aclose()


async def test_with_images_pulls_the_page_images_into_the_trajectory(demo_site: Server, redis_server) -> None:
    client = aredis.Redis.from_url(redis_server.url)
    try:
        result = await visit(demo_site, demo_site.url("/chelsea.html"), blobs=AsyncBlobStore(client, 600))
        assert [i.origin for i in result.images] == [demo_site.url("/chelsea.jpg")]
        assert result.usage["images_pulled"] == 1
    finally:
        await client.aclose()


def test_celery_entry_point_answers_web_visit_with_the_observation_json(
    demo_site: Server, redis_server, monkeypatch, tmp_path
) -> None:
    from toolfabric_server.common.bridge import close_all
    from toolfabric_server.common.settings import CommonSettings
    from toolfabric_server.index import open_index
    from toolfabric_server.tools.fetch import tasks

    monkeypatch.setenv("TOOLFABRIC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOOLFABRIC_FETCH_ALLOWED_PORTS", f"[80, 443, {demo_site.port}]")
    monkeypatch.setenv("TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST", f'["127.0.0.1:{demo_site.port}"]')
    common = CommonSettings()  # read as a worker reads them at its start, with the environment above
    handlers = tasks.handlers(common, FetchSettings(), "")
    index = open_index(common)
    try:
        by_name: dict[str, tuple[type[BaseModel], Handler]] = {"web_visit": (WebVisitArgs, handlers["web_visit"])}
        result = run_tool(by_name, "web_visit", {"urls": [demo_site.url("/sts-93.html")]}, {"question": "q"})
        [entry] = json.loads(result.text)
        assert result.ok and entry["title"].startswith("STS-93")
        assert result.usage["cache_miss"] == 1
        again = run_tool(by_name, "web_visit", {"urls": [demo_site.url("/sts-93.html")]}, {"question": "q"})
        assert again.usage["cache_hit_hot"] == 1 and json.loads(again.text) == [entry]
        # offline search grows with use: the page is now in the local index
        assert demo_site.url("/sts-93.html") in [r.url for r in index.search_text("STS-93 Chandra", 5)]
        bad = run_tool(by_name, "web_visit", {"urls": "not a list"}, {})
        assert not bad.ok and bad.error_kind == "invalid_argument"
    finally:
        close_all()
        index.close()


def demo_site_root(server: Server):
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "toolfabric" / "demo" / "site"

