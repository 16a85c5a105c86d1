"""Bundles: content-addressed and tamper-evident; Vision-DeepResearch's SQLite cache imported into one answers
the search service offline (a real Redis, the service as the worker builds it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.search.conftest import settings_for
from toolfabric_server.common.bundle import Bundle, BundleError, BundleWriter
from toolfabric_server.common.cache import cache_key
from toolfabric_server.common.tools import ToolContext
from toolfabric_server.evals.cache_import import import_vdr_cache, search_results
from toolfabric_server.index.sqlite import SQLiteIndex
from toolfabric_server.tools.search.runtime import build_service
from toolfabric_server.tools.search.spec import TextSearchArgs
from toolfabric_server.web.settings import FetchSettings

SEARCH_TEXT = """Search for 'Eileen Collins' returned 2 results:

1. [Eileen Collins - NASA](https://nasa.test/collins)
   Date published: 2020-01-01
   First woman to command a Space Shuttle mission.

2. [STS-93 - Wikipedia](https://wiki.test/STS-93)
   Columbia deployed the Chandra X-ray Observatory."""


def vdr_cache(path: Path) -> Path:
    """A cache with Vision-DeepResearch's four tables (rllm/eval/tools.py's schema) and one row each."""
    con = sqlite3.connect(path)
    for table, key, column in (("text_search", "query_hash", "query"), ("text_visit", "url_hash", "url"),
                               ("image_search", "image_url_hash", "image_url"), ("image_visit", "url_hash", "url")):
        con.execute(f"CREATE TABLE {table} ({key} TEXT PRIMARY KEY, {column} TEXT NOT NULL, result TEXT NOT NULL, "
                    "created_at REAL NOT NULL, last_accessed REAL NOT NULL, access_count INTEGER DEFAULT 1)")
    rows = {"text_search": ("Eileen Collins", SEARCH_TEXT),
            "text_visit": ("https://nasa.test/collins#bio", json.dumps(
                {"content": "Eileen Collins commanded STS-93.", "description": "NASA biography",
                 "meta": {"title": "Eileen Collins"}})),
            "image_search": ("https://oss.test/crop1.jpg", json.dumps(
                [{"title": "Collins", "image_url": "https://nasa.test/c.jpg", "link": "https://nasa.test/collins",
                  "source": "NASA", "thumbnail_url": ""}])),
            "image_visit": ("https://nasa.test/c.jpg", "a portrait")}
    for table, (value, result) in rows.items():
        con.execute(f"INSERT INTO {table} VALUES (?, ?, ?, 1700000000.0, 1700000000.0, 1)", ("h", value, result))
    con.commit()
    con.close()
    return path


def test_a_bundles_hash_names_its_content_whatever_the_order_written(tmp_path: Path) -> None:
    hashes = []
    for name, order in (("a", [1, 2]), ("b", [2, 1])):
        writer = BundleWriter(tmp_path / name, {"run": "x"})
        for n in order:
            writer.add(f"search.web:{n}", {"value": [n], "provider": "p", "fetched_at": 0.0, "cost_units": 0.0})
        writer.add_judge("triton:j", "k1", "correct: yes")
        hashes.append(writer.finish())
    assert hashes[0] == hashes[1] == Bundle(tmp_path / "a").hash
    bundle = Bundle(tmp_path / "a")
    assert bundle.get("search.web:2")["value"] == [2] and bundle.get("search.web:3") is None
    assert (bundle.judge_name, bundle.judge_reply("k1")) == ("triton:j", "correct: yes")
    obj = next((tmp_path / "a" / "objects").iterdir())
    obj.write_text(obj.read_text().replace("[", "[9,"))
    with pytest.raises(BundleError, match="does not match its name"):
        [bundle.get(k) for k in bundle.entries]


def test_a_folder_that_is_not_a_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"bundle.json: cannot read the bundle"):
        Bundle(tmp_path)


def test_vdr_search_text_is_parsed_into_results() -> None:
    assert search_results(SEARCH_TEXT) == [
        {"title": "Eileen Collins - NASA", "url": "https://nasa.test/collins",
         "snippet": "Date published: 2020-01-01 First woman to command a Space Shuttle mission."},
        {"title": "STS-93 - Wikipedia", "url": "https://wiki.test/STS-93",
         "snippet": "Columbia deployed the Chandra X-ray Observatory."}]
    assert search_results("No search results found for 'x'") == []


async def test_an_imported_vdr_cache_answers_text_search_offline(tmp_path: Path, redis_server, redis_client) -> None:
    digest, counts = import_vdr_cache(vdr_cache(tmp_path / "cache.db"), tmp_path / "bundle", FetchSettings())
    assert counts == {"text_search": 1, "text_visit": 1, "image_search": 1, "image_visit": 1, "skipped": 0}
    bundle = Bundle(tmp_path / "bundle")
    assert bundle.hash == digest
    page = bundle.get(cache_key("web_visit", url_sha256=__import__("hashlib").sha256(
        b"https://nasa.test/collins").hexdigest()))
    assert page["value"]["title"] == "Eileen Collins" and "commanded STS-93" in page["value"]["content"]
    common, config = settings_for(redis_server.url, tmp_path / "data", "replay", providers=["local"])
    common = common.model_copy(update={"cache_bundle": str(bundle.path)})
    index = SQLiteIndex(tmp_path / "empty-index.sqlite3")
    service, close = await build_service(common, config, index=index)
    try:
        result = await service.text_search(TextSearchArgs(queries=["eileen   COLLINS", "never asked"]),
                                           ToolContext(trajectory_id="t-1", eval_run="vdr"))
        answered, missing = result.data
        assert [r["url"] for r in answered["results"]] == ["https://nasa.test/collins", "https://wiki.test/STS-93"]
        assert "is not in the bundle" in missing["error"] and bundle.hash in missing["error"]
        trail = await service.cache.trail("t-1")
        assert [(r, w) for r, _, w in trail] == [(cache_key("search.web", query="eileen collins"),
                                                  "text_search 'eileen COLLINS' via local")]
        # Outside an eval run nothing is trailed (the trail costs Redis memory per answer).
        await service.text_search(TextSearchArgs(queries=["eileen collins"]), ToolContext(trajectory_id="t-2"))
        assert await service.cache.trail("t-2") == []
    finally:
        await close()
        index.close()


def test_eval_run_names_a_bad_bundle_and_refuses_to_freeze_a_rerun(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "1", "question": "q?", "answers": ["a"]}) + "\n")

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "eval", "run", str(data), "--runs-dir",
                               str(tmp_path / "runs"), "--no-progress", *extra], capture_output=True, text=True,
                              timeout=120)

    missing = run("--bundle", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert f"{tmp_path / 'nowhere' / 'bundle.json'}: cannot read the bundle" in missing.stderr
    both = run("--bundle", str(tmp_path / "nowhere"), "--freeze")
    assert both.returncode == 2 and "--freeze and --bundle together" in both.stderr
