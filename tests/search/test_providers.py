"""The real provider client (httpx, retries, backoff, shared rate limit) against local servers that
speak Serper's and SearXNG's JSON, including their error and rate-limit replies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from tests.search.conftest import DEMO_BASE, MakeService
from tests.search.fake_providers import FakeSearxng, FakeSerper
from toolfabric_server.common.blob_urls import BlobServer, start_blob_server
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.tools.search.spec import ImageSearchArgs, TextSearchArgs

Q = "Eileen Collins first Space Shuttle mission commanded"


async def _search(service, *queries: str) -> tuple[list[dict], dict]:  # type: ignore[no-untyped-def]
    result = await service.text_search(TextSearchArgs(queries=list(queries)), ToolContext())
    return json.loads(result.text), result.usage


async def test_serper_web_results_map_to_title_url_snippet_with_key_locale_and_credits(
    make_service: MakeService, fake_serper: FakeSerper
) -> None:
    service = await make_service(["serper"], serper_base_url=fake_serper.url, results_per_query=3)
    entries, usage = await _search(service, "Chandra X-ray")
    assert entries == [{"query": "Chandra X-ray", "results": [
        {"title": f"Chandra X-ray — result {i}", "url": f"https://example.org/{i}?q=13",
         "snippet": f"About Chandra X-ray ({i})"} for i in (1, 2, 3)]}]
    sent = fake_serper.requests[0]
    assert sent["path"] == "/search" and sent["headers"]["X-API-KEY"] == "test-serper-key"
    assert sent["body"] == {"q": "Chandra X-ray", "num": 3, "gl": "us", "hl": "en"}
    assert usage["provider_calls"] == 1 and usage["cost_units"] == 1 and usage["cache_miss"] == 1


async def test_serper_bad_key_is_a_clear_error_when_it_is_the_only_provider(make_service: MakeService,
                                                                            fake_serper: FakeSerper) -> None:
    service = await make_service(["serper"], serper_base_url=fake_serper.url, serper_api_key="wrong")
    entries, _ = await _search(service, Q)
    assert entries == [{"query": Q, "error": "no provider could answer: serper: HTTP 403, credentials rejected: "
                                             "Unauthorized."}]
    assert fake_serper.calls() == 1  # an auth failure is not retried


async def test_a_401_reply_is_a_credentials_error_that_is_not_retried(make_service: MakeService,
                                                                     fake_serper: FakeSerper) -> None:
    fake_serper.always = "401"
    service = await make_service(["serper"], serper_base_url=fake_serper.url)
    entries, _ = await _search(service, Q)
    assert entries == [{"query": Q, "error": "no provider could answer: serper: HTTP 401, credentials rejected: "
                                             "Invalid API key"}]
    assert fake_serper.calls() == 1


async def test_serper_bad_key_falls_through_to_the_local_index(make_service: MakeService,
                                                              fake_serper: FakeSerper) -> None:
    service = await make_service(["serper", "local"], serper_base_url=fake_serper.url, serper_api_key="wrong")
    entries, usage = await _search(service, Q)
    assert entries[0]["results"][0]["url"].startswith(DEMO_BASE)
    assert usage["provider_calls"] == 2  # the failed serper call counts too


async def test_missing_serper_key_names_the_setting(make_service: MakeService, fake_serper: FakeSerper) -> None:
    service = await make_service(["serper"], serper_base_url=fake_serper.url, serper_api_key=None)
    entries, _ = await _search(service, Q)
    assert "TOOLFABRIC_SEARCH_SERPER_API_KEY" in entries[0]["error"] and fake_serper.calls() == 0


async def test_429_and_5xx_replies_are_retried_until_an_answer(make_service: MakeService,
                                                              fake_serper: FakeSerper) -> None:
    fake_serper.faults = ["429", "503"]
    service = await make_service(["serper"], serper_base_url=fake_serper.url)
    entries, usage = await _search(service, Q)
    assert len(entries[0]["results"]) == 5 and fake_serper.calls() == 3
    assert usage["provider_calls"] == 1


async def test_persistent_429_is_reported_as_rate_limited_after_all_attempts(make_service: MakeService,
                                                                             fake_serper: FakeSerper) -> None:
    fake_serper.always = "429"
    service = await make_service(["serper"], serper_base_url=fake_serper.url, provider_retries=2)
    entries, _ = await _search(service, Q)
    assert entries[0]["error"] == ("no provider could answer: serper: rate limited after 3 attempts "
                                   "(HTTP 429: Too many requests)")
    assert fake_serper.calls() == 3


async def test_persistent_500_names_the_status_after_all_attempts(make_service: MakeService,
                                                                 fake_serper: FakeSerper) -> None:
    fake_serper.always = "500"
    service = await make_service(["serper"], serper_base_url=fake_serper.url, provider_retries=1)
    entries, _ = await _search(service, Q)
    assert entries[0]["error"] == "no provider could answer: serper: HTTP 500: internal error after 2 attempts"


async def test_malformed_provider_json_is_an_error_and_the_next_provider_answers(
    make_service: MakeService, fake_serper: FakeSerper, fake_searxng: FakeSearxng
) -> None:
    fake_serper.always = "malformed"
    only = await make_service(["serper"], serper_base_url=fake_serper.url)
    entries, _ = await _search(only, Q)
    assert entries[0]["error"] == ("no provider could answer: serper: reply is not JSON (starts with "
                                   "'{\"organic\": [{\"tit')")
    both = await make_service(["serper", "searxng"], serper_base_url=fake_serper.url, searxng_url=fake_searxng.url)
    entries, _ = await _search(both, "other query")
    assert entries[0]["results"][0]["url"] == "https://searx.example.net/1"


async def test_provider_timeout_is_not_retried_and_falls_through(make_service: MakeService,
                                                                fake_serper: FakeSerper) -> None:
    fake_serper.always = "timeout"
    service = await make_service(["serper", "local"], serper_base_url=fake_serper.url, provider_timeout_s=0.3)
    entries, _ = await _search(service, Q)
    assert entries[0]["results"][0]["url"].startswith(DEMO_BASE) and fake_serper.calls() == 1
    only = await make_service(["serper"], serper_base_url=fake_serper.url, provider_timeout_s=0.3)
    entries, _ = await _search(only, "another")
    assert entries[0]["error"] == "no provider could answer: serper: no answer within 0.3s"


async def test_provider_outage_falls_through_to_the_next_provider_in_order(make_service: MakeService,
                                                                          fake_searxng: FakeSearxng) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    service = await make_service(["serper", "searxng", "local"], serper_base_url=dead, searxng_url=fake_searxng.url,
                                 provider_retries=1)
    entries, usage = await _search(service, Q)
    assert entries[0]["results"][0]["url"] == "https://searx.example.net/1"
    assert usage["provider_calls"] == 2 and usage["cost_units"] == 0


async def test_when_every_provider_fails_the_error_names_each_one(make_service: MakeService) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    service = await make_service(["serper", "searxng"], serper_base_url=dead, searxng_url=dead, provider_retries=0)
    entries, _ = await _search(service, Q)
    error = entries[0]["error"]
    assert error.startswith("no provider could answer: serper: unreachable (ConnectError")
    assert "; searxng: unreachable (ConnectError" in error


async def test_searxng_results_map_to_title_url_snippet(make_service: MakeService, fake_searxng: FakeSearxng) -> None:
    service = await make_service(["searxng"], searxng_url=fake_searxng.url, results_per_query=2)
    entries, usage = await _search(service, "kittens")
    assert entries[0]["results"] == [
        {"title": "kittens (1)", "url": "https://searx.example.net/1", "snippet": "text 1 on kittens"},
        {"title": "kittens (2)", "url": "https://searx.example.net/2", "snippet": "text 2 on kittens"},
    ]
    assert fake_searxng.requests[0]["query"]["format"] == ["json"] and usage["cost_units"] == 0


async def test_searxng_without_the_json_format_says_how_to_enable_it(make_service: MakeService) -> None:
    with FakeSearxng(json_enabled=False).running() as instance:
        service = await make_service(["searxng"], searxng_url=instance.url)
        entries, _ = await _search(service, "kittens")
    assert "HTTP 403" in entries[0]["error"] and "search.formats in settings.yml" in entries[0]["error"]


@pytest.fixture
async def blob_server(redis_server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BlobServer]:
    server = await start_blob_server("127.0.0.1", 0, CommonSettings())
    monkeypatch.setenv("TOOLFABRIC_PUBLIC_BASE_URL", server.url)  # read by the services the test builds after it
    yield server
    await server.stop()


async def test_lens_fetches_the_image_at_a_signed_blob_url_and_results_map_to_title_source_link(
    make_service: MakeService, fake_serper: FakeSerper, blob_server: BlobServer, redis_client: redis.Redis,
    demo_dir: Path,
) -> None:
    ref = BlobStore(redis_client, 3600).put((demo_dir / "question.jpg").read_bytes())
    service = await make_service(["serper"], serper_base_url=fake_serper.url, results_per_query=2)
    result = await service.image_search(ImageSearchArgs(image_paths=["<image>"]),
                                        ToolContext(images={"<image 1>": ref}))
    assert json.loads(result.text) == [{"image": "<image 1>", "results": [
        {"title": "Lens match 1", "source": "https://example.org/lens1", "link": "https://img.example.org/lens1.jpg"},
        {"title": "Lens match 2", "source": "https://example.org/lens2", "link": "https://img.example.org/lens2.jpg"},
    ]}]
    sent = fake_serper.requests[0]["body"]["url"]
    assert sent.startswith(blob_server.url + "/blobs/" + ref.removeprefix("sha256:") + "?exp=")
    assert fake_serper.fetched_images == [(200, "image/jpeg")]
    assert result.usage["cost_units"] == 3


async def test_image_search_skips_providers_without_reverse_search(
    make_service: MakeService, fake_searxng: FakeSearxng, redis_client: redis.Redis, demo_dir: Path
) -> None:
    ref = BlobStore(redis_client, 3600).put((demo_dir / "question.jpg").read_bytes())
    service = await make_service(["searxng", "local"], searxng_url=fake_searxng.url)
    result = await service.image_search(ImageSearchArgs(image_paths=["<image>"]),
                                        ToolContext(images={"<image 1>": ref}))
    assert json.loads(result.text)[0]["results"][0]["source"] == DEMO_BASE + "eileen-collins.html"
    assert fake_searxng.calls() == 0


async def test_image_search_by_text_on_serper_and_searxng(make_service: MakeService, fake_serper: FakeSerper,
                                                          fake_searxng: FakeSearxng) -> None:
    serper = (await make_service(["serper"], serper_base_url=fake_serper.url)).providers[0]
    searx = (await make_service(["searxng"], searxng_url=fake_searxng.url)).providers[0]
    got = await serper.image_text("sunset", 2)
    assert [(r.title, r.source, r.link) for r in got.results] == [  # type: ignore[union-attr]
        ("picture 1", "https://example.org/page1", "https://img.example.org/1.jpg"),
        ("picture 2", "https://example.org/page2", "https://img.example.org/2.jpg")]
    got = await searx.image_text("sunset", 1)
    assert [(r.title, r.source, r.link) for r in got.results] == [  # type: ignore[union-attr]
        ("sunset pic 1", "https://pics.example.net/p1", "https://pics.example.net/1.png")]


async def test_the_shared_rate_limit_makes_a_provider_unavailable_instead_of_waiting_forever(
    make_service: MakeService, fake_serper: FakeSerper
) -> None:
    service = await make_service(["serper", "local"], serper_base_url=fake_serper.url, provider_rate_per_s=0.01,
                                 provider_burst=1, provider_max_rate_wait_s=0.1)
    first, _ = await _search(service, "first query")
    second, _ = await _search(service, Q)
    assert first[0]["results"][0]["url"].startswith("https://example.org/")
    assert second[0]["results"][0]["url"].startswith(DEMO_BASE)  # serper's bucket was empty: local answered
    assert fake_serper.calls() == 1
