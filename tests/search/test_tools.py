"""text_search / image_search as the model sees them: observation format, ranking on the demo
corpus, and every bad input becoming a clear error entry while the other queries still answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from tests.search.conftest import DEMO_BASE, MakeService
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.tools.search.errors import QueryRejected
from toolfabric_server.tools.search.spec import ImageSearchArgs, TextSearchArgs

EILEEN = DEMO_BASE + "eileen-collins.html"
STS93 = DEMO_BASE + "sts-93.html"


def _ctx(redis_client: redis.Redis, **images: bytes) -> ToolContext:
    store = BlobStore(redis_client, 3600)
    return ToolContext(images={f"<image {i}>": store.put(data) for i, data in enumerate(images.values(), 1)})


def _face_crop(jpeg: bytes) -> bytes:
    """The upper half, middle columns (the face), upscaled 2x — a sub-image the model might make."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    crop = cv2.resize(img[0 : h // 2, w // 4 : 3 * w // 4], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".png", crop)[1].tobytes()


async def test_text_search_ranks_the_pages_that_answer_the_demo_question_first(make_service: MakeService) -> None:
    service = await make_service()
    q = "Eileen Collins first Space Shuttle mission commanded"
    result = await service.text_search(TextSearchArgs(queries=[q]), ToolContext())
    entries = json.loads(result.text)
    assert result.ok and entries == result.data
    assert entries[0]["query"] == q
    urls = [r["url"] for r in entries[0]["results"]]
    assert set(urls[:2]) == {EILEEN, STS93}
    assert all(set(r) == {"title", "url", "snippet"} and r["snippet"] for r in entries[0]["results"])


async def test_image_search_finds_the_page_of_a_rescaled_recompressed_photo(
    make_service: MakeService, redis_client: redis.Redis, demo_dir: Path
) -> None:
    service = await make_service()
    ctx = _ctx(redis_client, q=(demo_dir / "question.jpg").read_bytes())
    result = await service.image_search(ImageSearchArgs(image_paths=["<image>"]), ctx)
    entries = json.loads(result.text)
    assert entries[0]["image"] == "<image 1>"
    first = entries[0]["results"][0]
    assert first == {"title": "Eileen Collins, NASA astronaut, in her orange launch and entry suit",
                     "source": EILEEN, "link": DEMO_BASE + "astronaut.jpg"}


async def test_image_search_finds_the_page_of_an_upscaled_crop_of_the_face(
    make_service: MakeService, redis_client: redis.Redis, demo_dir: Path
) -> None:
    service = await make_service()
    ctx = _ctx(redis_client, crop=_face_crop((demo_dir / "question.jpg").read_bytes()))
    result = await service.image_search(ImageSearchArgs(image_paths=["<image 1>"]), ctx)
    assert json.loads(result.text)[0]["results"][0]["source"] == EILEEN


async def test_image_search_of_an_unrelated_photo_finds_nothing(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    from skimage import data

    png = cv2.imencode(".png", cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR))[1].tobytes()
    service = await make_service()
    result = await service.image_search(ImageSearchArgs(image_paths=["<image 1>"]), _ctx(redis_client, c=png))
    assert json.loads(result.text) == [{"image": "<image 1>", "results": []}]


async def test_unknown_image_names_become_error_entries_beside_the_known_ones(
    make_service: MakeService, redis_client: redis.Redis, demo_dir: Path
) -> None:
    service = await make_service()
    ctx = _ctx(redis_client, q=(demo_dir / "question.jpg").read_bytes())
    result = await service.image_search(ImageSearchArgs(image_paths=["<image 1>", "<sub-image 3>", "photo.jpg"]), ctx)
    entries = json.loads(result.text)
    assert result.ok and entries[0]["results"]
    assert entries[1] == {"image": "<sub-image 3>",
                          "error": "unknown image '<sub-image 3>'; this trajectory has: <image 1>"}
    assert entries[2]["image"] == "photo.jpg" and "is not an image name" in entries[2]["error"]


async def test_image_search_with_only_unknown_images_fails_with_kind_unknown_image(
    make_service: MakeService,
) -> None:
    service = await make_service()
    result = await service.image_search(ImageSearchArgs(image_paths=["<image 2>"]), ToolContext())
    assert not result.ok and result.error_kind == "unknown_image"
    assert json.loads(result.text) == [{"image": "<image 2>",
                                        "error": "unknown image '<image 2>'; this trajectory has: none"}]


async def test_expired_image_blob_is_an_error_entry(make_service: MakeService) -> None:
    service = await make_service()
    ctx = ToolContext(images={"<image 1>": "sha256:" + "0" * 64})
    result = await service.image_search(ImageSearchArgs(image_paths=["<image 1>"]), ctx)
    assert "expired" in json.loads(result.text)[0]["error"]


async def test_empty_and_oversized_queries_are_rejected_while_good_ones_answer(make_service: MakeService) -> None:
    service = await make_service()
    long_query = ("space shuttle " * 200)[:2000]
    result = await service.text_search(TextSearchArgs(queries=["", "   ", long_query, "Chandra"]),
                                       ToolContext())
    empty, blank, long, good = json.loads(result.text)
    assert empty == {"query": "", "error": "empty query; give some words to search for"}
    assert blank["error"] == empty["error"]
    assert long["error"] == ("query is 2000 characters, over the limit of 500; shorten it to the key terms")
    assert good["results"][0]["url"].endswith("chandra.html")
    assert result.ok and result.usage["provider_calls"] == 1


async def test_fifty_queries_in_one_call_are_refused_with_the_limit(make_service: MakeService) -> None:
    service = await make_service()
    with pytest.raises(QueryRejected) as raised:
        await service.text_search(TextSearchArgs(queries=[f"q{i}" for i in range(50)]), ToolContext())
    assert str(raised.value) == ("50 queries in one call; at most 8 are answered per call, so split them over "
                                 "several calls")
    assert raised.value.kind == "invalid_argument"  # the worker turns it into this failure kind


async def test_a_query_with_no_matches_has_an_empty_result_list(make_service: MakeService) -> None:
    service = await make_service()
    result = await service.text_search(TextSearchArgs(queries=["zyxwvut qwertyuiop"]), ToolContext())
    assert json.loads(result.text) == [{"query": "zyxwvut qwertyuiop", "results": []}]


def test_celery_task_answers_text_and_image_search_through_the_worker_path(
    redis_server, redis_client: redis.Redis, tmp_path: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.tasks import task_of
    from toolfabric_server.common.bridge import close_all
    from toolfabric_server.index import open_index
    from toolfabric_server.index.indexer import IndexingSettings, index_paths

    monkeypatch.setenv("TOOLFABRIC_DATA_DIR", str(tmp_path))
    task: Any = task_of("search")  # the Celery task as a worker registers it at start; .run is its body
    indexing = IndexingSettings.read()
    index = open_index(indexing.common)  # the index the worker's local provider opens
    try:
        index_paths([str(demo_dir / "site")], base_url=DEMO_BASE, progress=False, index=index, settings=indexing)
        ctx = _ctx(redis_client, q=(demo_dir / "question.jpg").read_bytes()).model_dump()
        first = task.run("image_search", {"image_paths": ["<image>"]}, ctx)
        again = task.run("image_search", {"image_paths": ["<image>"]}, ctx)
        text = task.run("text_search", {"queries": ["who commanded STS-93"]}, ctx)
        bad = task.run("text_search", {"queries": [f"q{i}" for i in range(50)]}, ctx)
        missing = task.run("text_search", {"query": "x"}, ctx)
    finally:
        close_all()
        index.close()
    assert json.loads(first["text"])[0]["results"][0]["source"] == EILEEN
    assert first["usage"]["provider_calls"] == 1 and again["usage"]["cache_hit_hot"] == 1
    assert json.loads(text["text"])[0]["results"][0]["url"] == STS93
    assert bad["ok"] is False and bad["error_kind"] == "invalid_argument" and "split them" in bad["text"]
    assert missing["ok"] is False and "queries" in missing["text"]
