"""One contract for both backends of the local index and of the persistent cache tier.

The embedded half (SQLite FTS5) always runs. The Elasticsearch half runs where
ELASTICSEARCH_URL points at a real cluster, and is skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from toolfabric_server.common.cache_store import ElasticsearchCacheStore, PersistentStore, SQLiteCacheStore
from toolfabric_server.index import ImageOccurrence, SearchIndex
from toolfabric_server.index.documents import Page
from toolfabric_server.index.imagematch import QUERY_FEATURES, fingerprint
from toolfabric_server.index.sqlite import SQLiteIndex

ES_URL = os.environ.get("ELASTICSEARCH_URL")
BACKENDS = ["sqlite", "elasticsearch"]
MAX_PIXELS = 40_000_000


def _skip_without_es(kind: str) -> None:
    if kind == "elasticsearch" and not ES_URL:
        pytest.skip("ELASTICSEARCH_URL is not set: no Elasticsearch cluster to run the contract against "
                    "(none can be installed on this machine)")


def _drop_es(prefix: str) -> None:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(ES_URL)
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
    es.close()


@pytest.fixture(params=BACKENDS)
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchIndex]:
    _skip_without_es(request.param)
    if request.param == "sqlite":
        idx: SearchIndex = SQLiteIndex(tmp_path / "index.sqlite3")
        yield idx
        idx.close()
        return
    from toolfabric_server.index.elastic import ElasticsearchIndex

    prefix = f"tf-test-{uuid.uuid4().hex[:8]}"
    idx = ElasticsearchIndex(str(ES_URL), prefix)
    yield idx
    idx.close()
    _drop_es(prefix)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PersistentStore]:
    _skip_without_es(request.param)
    if request.param == "sqlite":
        s: PersistentStore = SQLiteCacheStore(tmp_path / "cache.sqlite3")
        yield s
        s.close()
        return
    prefix = f"tf-test-{uuid.uuid4().hex[:8]}"
    s = ElasticsearchCacheStore(str(ES_URL), prefix)
    yield s
    s.close()
    _drop_es(prefix)


PAGES = [
    Page("https://a.test/collins", "Eileen Collins, astronaut",
         "Eileen Collins commanded STS-93, the first Space Shuttle mission commanded by a woman.", "html"),
    Page("https://a.test/shuttle", "Space Shuttle program",
         "The Space Shuttle flew 135 missions. Many astronauts flew on the Space Shuttle.", "html"),
    Page("https://a.test/coffee", "Coffee", "Coffee is a brewed drink made from roasted coffee beans.", "html"),
    Page("https://a.test/cats", "Cats", "The cat is a small domesticated carnivorous mammal.", "markdown"),
    Page("https://a.test/empty", "Nothing", "", "text"),
]


def _urls(results) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.url for r in results]


def test_bm25_ranks_the_page_matching_the_rarer_terms_first(index: SearchIndex) -> None:
    index.upsert_pages(PAGES)
    results = index.search_text("who commanded the first shuttle mission", 3)
    assert _urls(results)[0] == "https://a.test/collins"
    assert "https://a.test/coffee" not in _urls(results)
    assert "commanded" in results[0].snippet and results[0].title == "Eileen Collins, astronaut"


def test_title_matches_outrank_body_matches(index: SearchIndex) -> None:
    index.upsert_pages([Page("https://b.test/1", "Telescope", "A story about many things and a mirror.", "html"),
                        Page("https://b.test/2", "Mirrors", "A telescope is mentioned once here among things.",
                             "html")])
    assert _urls(index.search_text("telescope", 2))[0] == "https://b.test/1"


def test_stemming_matches_word_forms(index: SearchIndex) -> None:
    index.upsert_pages(PAGES)
    assert "https://a.test/collins" in _urls(index.search_text("commanding missions", 5))


def test_upserting_a_url_replaces_its_text(index: SearchIndex) -> None:
    index.upsert_pages(PAGES)
    index.upsert_pages([Page("https://a.test/coffee", "Tea", "Tea is an aromatic beverage.", "html")])
    assert _urls(index.search_text("coffee beans", 5)) == []
    assert _urls(index.search_text("aromatic tea", 5)) == ["https://a.test/coffee"]
    assert index.counts()["pages"] == len(PAGES)


@pytest.mark.parametrize("query", ['"unbalanced', "AND OR NOT", "NEAR(x y)", "col:umn*", "-- ;", "()", "   "])
def test_queries_with_search_syntax_characters_never_fail(index: SearchIndex, query: str) -> None:
    index.upsert_pages(PAGES)
    assert isinstance(index.search_text(query, 5), list)


def test_every_write_that_changes_something_changes_the_generation(index: SearchIndex) -> None:
    seen = [index.generation()]
    index.upsert_pages(PAGES[:1])
    seen.append(index.generation())
    index.set_occurrences("https://a.test/collins", [ImageOccurrence("h1", "https://a.test/collins", "x.jpg", "X")])
    seen.append(index.generation())
    index.set_occurrences("https://a.test/collins", [])
    seen.append(index.generation())
    assert len(set(seen)) == 4


def test_rewriting_unchanged_pages_writes_nothing_and_keeps_every_scope(index: SearchIndex) -> None:
    assert index.upsert_pages(PAGES) == len(PAGES)
    before = (index.generation(), index.text_scope("coffee beans"), index.image_scope())
    assert index.upsert_pages(PAGES) == 0
    assert (index.generation(), index.text_scope("coffee beans"), index.image_scope()) == before


def test_a_changed_page_changes_the_scope_of_queries_sharing_its_words_only(index: SearchIndex) -> None:
    index.upsert_pages(PAGES)
    coffee, cats, images = index.text_scope("roasted coffee"), index.text_scope("domesticated cat"), index.image_scope()
    roasted = index.text_scope("roasted")
    assert index.upsert_pages([Page("https://a.test/coffee", "Coffee", "Coffee is brewed from roasted beans.",
                                     "html")]) == 1
    assert index.text_scope("roasted coffee") != coffee  # "coffee": once now, twice before
    assert index.text_scope("roasted") == roasted  # on the page, but as often as before: its ranking stands
    assert index.text_scope("brewing") != index.text_scope("zeppelin")  # sanity: scopes differ by words
    assert index.text_scope("domesticated cats") == cats  # same stems as "domesticated cat": untouched
    assert index.image_scope() == images
    index.clear()
    assert index.text_scope("domesticated cat") != cats  # clearing drops everything


def test_headings_weigh_between_title_and_body(index: SearchIndex) -> None:
    index.upsert_pages([
        Page("https://h.test/body", "Guide", "Many words here. The configuration of themes is explained below.",
             "html", headings="Introduction | Usage"),
        Page("https://h.test/heading", "Guide", "Many words here. Options are explained below.", "html",
             headings="Introduction | Theme configuration"),
    ])
    assert _urls(index.search_text("theme configuration", 2))[0] == "https://h.test/heading"


@pytest.mark.parametrize(("query", "expected"), [
    ("lru_cache", "https://code.test/functools"),
    ("asyncio.gather", "https://code.test/asyncio"),
    ("2**19937-1", "https://code.test/random"),
])
def test_code_identifiers_rank_pages_holding_them_whole_first(index: SearchIndex, query: str, expected: str) -> None:
    index.upsert_pages([
        Page("https://code.test/functools", "functools", "Decorate with functools.lru_cache to memoise calls.", "html"),
        Page("https://code.test/caches", "Caches", "An LRU policy evicts the oldest entry of a cache; the LRU "
             "list and the cache size. Cache cache cache, LRU LRU.", "html"),
        Page("https://code.test/asyncio", "Tasks", "Run awaitables concurrently with asyncio.gather(*aws).", "html"),
        Page("https://code.test/gather", "Notes", "asyncio event loops; we gather results; asyncio runs "
             "them; the results we gather.", "html"),
        Page("https://code.test/random", "random", "The Mersenne Twister has a period of 2**19937-1.", "html"),
        Page("https://code.test/numbers", "Numbers", "2 and 1 and 19937 are numbers; 1 1 2 2 19937.", "html"),
    ])
    assert _urls(index.search_text(query, 3))[0] == expected


def test_snippets_show_where_the_query_words_are_on_a_long_page(index: SearchIndex) -> None:
    filler = " ".join(f"Paragraph {i} is about nothing in particular." for i in range(3000))  # ~140 KB
    index.upsert_pages([Page("https://long.test/", "Long page",
                             filler[:60_000] + " The zeppelin hangar holds the airship. " + filler, "html")])
    result = index.search_text("zeppelin hangar", 1)[0]
    assert "zeppelin hangar holds the airship" in result.snippet and len(result.snippet) <= 260


def _variants(path: Path) -> dict[str, bytes]:
    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    small = cv2.resize(img, (w * 3 // 5, h * 3 // 5), interpolation=cv2.INTER_AREA)
    crop = cv2.resize(img[h // 8 : h * 5 // 8, w // 4 : w * 3 // 4], None, fx=1.6, fy=1.6)
    return {
        "rescaled+recompressed": cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 40])[1].tobytes(),
        "cropped+upscaled": cv2.imencode(".png", crop)[1].tobytes(),
    }


@pytest.fixture
def photo_index(index: SearchIndex, demo_dir: Path) -> SearchIndex:
    names = ["astronaut", "coffee", "chelsea", "rocket"]
    fps = {n: fingerprint((demo_dir / "site" / f"{n}.jpg").read_bytes(), MAX_PIXELS) for n in names}
    index.upsert_images(list(fps.values()))
    for n, fp in fps.items():
        index.set_occurrences(f"https://a.test/{n}", [ImageOccurrence(fp.content_hash, f"https://a.test/{n}",
                                                                      f"https://a.test/{n}.jpg", f"photo of {n}")])
    # The same astronaut photo shown on a second page.
    astro = fps["astronaut"]
    index.set_occurrences("https://a.test/gallery", [
        ImageOccurrence(astro.content_hash, "https://a.test/gallery", "https://cdn.test/a.jpg", "gallery portrait")])
    return index


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
@pytest.mark.parametrize("variant", ["rescaled+recompressed", "cropped+upscaled"])
def test_reverse_image_search_finds_the_source_page_of_altered_copies(photo_index: SearchIndex, demo_dir: Path,
                                                                      name: str, variant: str) -> None:
    query = fingerprint(_variants(demo_dir / "site" / f"{name}.jpg")[variant], MAX_PIXELS, QUERY_FEATURES)
    results = photo_index.search_image(query, 5)
    assert results and results[0].source in (f"https://a.test/{name}", "https://a.test/gallery")
    assert {r.link for r in results} >= {f"https://a.test/{name}.jpg"}


def test_reverse_image_search_lists_every_page_showing_the_image(photo_index: SearchIndex, demo_dir: Path) -> None:
    query = fingerprint((demo_dir / "question.jpg").read_bytes(), MAX_PIXELS, QUERY_FEATURES)
    results = photo_index.search_image(query, 5)
    assert {(r.source, r.link, r.title) for r in results} == {
        ("https://a.test/astronaut", "https://a.test/astronaut.jpg", "photo of astronaut"),
        ("https://a.test/gallery", "https://cdn.test/a.jpg", "gallery portrait"),
    }


def test_reverse_image_search_of_an_unrelated_image_is_empty(photo_index: SearchIndex) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    query = fingerprint(cv2.imencode(".png", noise)[1].tobytes(), MAX_PIXELS, QUERY_FEATURES)
    assert photo_index.search_image(query, 5) == []


def test_images_are_found_by_their_alt_text_and_occurrences_are_replaced(photo_index: SearchIndex) -> None:
    assert [r.source for r in photo_index.search_image_text("coffee", 5)] == ["https://a.test/coffee"]
    photo_index.set_occurrences("https://a.test/coffee", [])
    assert photo_index.search_image_text("coffee", 5) == []
    assert photo_index.counts() == {"pages": 0, "images": 4, "occurrences": 4}


def test_clear_empties_the_index(photo_index: SearchIndex) -> None:
    photo_index.upsert_pages(PAGES)
    photo_index.clear()
    assert photo_index.counts() == {"pages": 0, "images": 0, "occurrences": 0}
    assert photo_index.search_text("coffee", 5) == []


ENTRY = {"value": [{"title": "Ünïcode ✓", "url": "https://x.test"}], "provider": "serper",
         "fetched_at": 1_700_000_000.5, "cost_units": 1.0}


def test_store_round_trips_entries_with_provenance(store: PersistentStore) -> None:
    store.put("search.web:k1", ENTRY, time.time() + 60)
    assert store.get("search.web:k1") == ENTRY
    assert store.get("search.web:missing") is None


def test_store_overwrites_by_key(store: PersistentStore) -> None:
    store.put("search.web:k1", ENTRY, time.time() + 60)
    store.put("search.web:k1", {**ENTRY, "value": "new"}, time.time() + 60)
    assert store.get("search.web:k1")["value"] == "new"  # type: ignore[index]


def test_store_hides_expired_entries_unless_asked_and_purges_them(store: PersistentStore) -> None:
    store.put("search.web:old", ENTRY, time.time() - 1)
    store.put("search.web:new", ENTRY, time.time() + 60)
    assert store.get("search.web:old") is None
    assert store.get("search.web:old", include_expired=True) == ENTRY
    assert store.purge_expired() == 1
    assert store.get("search.web:old", include_expired=True) is None and store.get("search.web:new") == ENTRY
    store.clear()
    assert store.get("search.web:new") is None


def test_a_word_on_most_pages_neither_drowns_rarer_words_nor_empties_a_query_of_its_own(index: SearchIndex) -> None:
    # Enough pages for the embedded engine's common-terms cutoff to apply.
    filler = [Page(f"https://c.test/{i}", f"Page {i}", f"common words everywhere number {i}", "text")
              for i in range(2500)]
    index.upsert_pages([*filler, Page("https://c.test/target", "Target", "common and a rare zeppelin", "text")])
    assert _urls(index.search_text("common zeppelin", 3))[0] == "https://c.test/target"
    assert len(index.search_text("common everywhere", 3)) == 3
