"""image_search on extreme shapes (a 20000x3 strip, 3x20000, 1x1) through the search task as a worker
runs it: an answer (no match is an empty list), never an `internal` error; and such images index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from tests.search.conftest import DEMO_BASE
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.index.documents import Page

SHAPES = {"20000x3": (3, 20000), "3x20000": (20000, 3), "1x1": (1, 1)}


def _png(shape: tuple[int, int]) -> bytes:
    return cv2.imencode(".png", np.random.default_rng(2).integers(0, 255, (*shape, 3), dtype=np.uint8))[1].tobytes()


def test_image_search_answers_extreme_shapes_through_the_worker_path(
        redis_server, redis_client: redis.Redis, tmp_path: Path, demo_dir: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.tasks import task_of
    from toolfabric_server.common.bridge import close_all
    from toolfabric_server.index import open_index
    from toolfabric_server.index.indexer import IndexingSettings, index_document, index_paths

    monkeypatch.setenv("TOOLFABRIC_DATA_DIR", str(tmp_path))
    task: Any = task_of("search")  # the Celery task as a worker registers it at start; .run is its body
    indexing = IndexingSettings.read()
    index = open_index(indexing.common)  # the index the worker's local provider opens
    store = BlobStore(redis_client, 600)
    try:
        index_paths([str(demo_dir / "site")], base_url=DEMO_BASE, progress=False, index=index, settings=indexing)
        strip = _png(SHAPES["20000x3"])
        # A page showing the strip is indexed like any other (its fingerprint has a hash, no features).
        page = index_document("https://strip.test/", b"<html><title>Strip</title><body><img src='s.png' alt='strip'>"
                              b"</body></html>", "text/html", images={"https://strip.test/s.png": strip},
                              index=index, max_pixels=40_000_000)
        assert isinstance(page, Page)
        names = {f"<image {i}>": store.put(_png(shape)) for i, shape in enumerate(SHAPES.values(), 1)}
        result = task.run("image_search", {"image_paths": list(names)}, {"images": names})
    finally:
        close_all()
        index.close()
    assert result["ok"], result["text"]
    entries = json.loads(result["text"])
    assert [e["image"] for e in entries] == list(names)
    assert all("error" not in e for e in entries), entries
    assert entries[0]["results"][0]["source"] == "https://strip.test/"  # the same strip: found by its hash


def test_fingerprints_keep_the_deployments_pixels_per_byte_limit() -> None:
    """A deployment's TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE reaches the index's image decoding too, not the default."""
    from toolfabric_server.common.errors import InvalidImage
    from toolfabric_server.common.images import PIXELS_PER_BYTE
    from toolfabric_server.index.imagematch import fingerprint

    flat = cv2.imencode(".png", np.zeros((2100, 2100, 3), np.uint8))[1].tobytes()
    density = 2100 * 2100 / len(flat)  # over the 4 M pixel floor where density is checked
    assert 100 < density < PIXELS_PER_BYTE
    assert fingerprint(flat, 40_000_000).width == 2100  # within the default limit
    with pytest.raises(InvalidImage):
        fingerprint(flat, 40_000_000, max_pixels_per_byte=100)
