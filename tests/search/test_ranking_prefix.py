"""Local search answers in one order whatever k is: `search_text(q, k)` is always the first k of
`search_text(q, k + n)` (a larger k must never reorder the head, e.g. by widening the re-scored candidates)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolfabric_server.index import ranking
from toolfabric_server.index.documents import Page
from toolfabric_server.index.sqlite import SQLiteIndex

# Few words, so pages tie on BM25 and most queries match more pages than the re-scored candidates.
VOCAB = ["orbit", "shuttle", "crew", "launch", "pad", "rocket", "lens", "image", "search", "page", "asyncio",
         "gather", "cache", "index", "query", "token"]
IDENTIFIERS = ["asyncio.gather", "lru_cache", "conf.py"]
PAGES = 180  # over four times ranking.CANDIDATES


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteIndex]:
    rng = random.Random(25)
    idx = SQLiteIndex(Path(tmp_path_factory.mktemp("prefix")) / "index.sqlite3")
    pages = []
    for n in range(PAGES):
        words = rng.choices(VOCAB, k=rng.randint(3, 40)) + rng.sample(IDENTIFIERS, k=rng.randint(0, 2))
        # Every tenth page repeats an earlier one's words under another URL: exact BM25 ties.
        text = pages[n - 10].text if n % 10 == 9 else " ".join(words)
        pages.append(Page(f"https://site.test/p{n}", " ".join(rng.sample(VOCAB, 2)), text, "html"))
    idx.upsert_pages(pages)
    yield idx
    idx.close()


query = st.lists(st.sampled_from(VOCAB + IDENTIFIERS), min_size=1, max_size=4).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=query, k=st.integers(1, 60), n=st.integers(1, 150))
def test_top_k_is_a_prefix_of_top_k_plus_n(index: SQLiteIndex, q: str, k: int, n: int) -> None:
    assert index.search_text(q, k) == index.search_text(q, k + n)[:k]


def test_the_corpus_exercises_more_than_the_candidates(index: SQLiteIndex) -> None:
    assert ranking.CANDIDATES < len(index.search_text("orbit crew", 200)) <= PAGES
