"""How queries and documents are cut into terms, shared by the index engines and their cache scopes.

Both engines split text the way FTS5's unicode61 tokenizer does: runs of letters and digits,
so `lru_cache` is `lru` + `cache` and `2**19937-1` is `2` + `19937` + `1`. A code identifier in
a query is therefore also kept whole, as a phrase of its parts that must appear side by side:
`asyncio.gather` finds pages saying `asyncio.gather(...)`, not every page mentioning asyncio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words joined by code punctuation (`a.b`, `a_b`, `a::b`, `a**b-1`, `--flag-name`) with no space between.
_IDENTIFIER = re.compile(r"[^\W_]+(?:(?:[._:/+*=-]+|(?<=\w)_+)[^\W_]+)+", re.UNICODE)
# Dropped from queries (not from documents): they match nearly every page and cost the most.
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were what when "
    "where which who whom why with how did does do can i you my me we our should would could there their "
    "than then into about".split()
)


@dataclass(frozen=True)
class Query:
    """Query words (stopwords dropped unless nothing else is left) and identifier phrases."""

    terms: list[str]
    phrases: list[list[str]]


def words(text: str) -> list[str]:
    """Lower-cased word tokens, split as FTS5's unicode61 splits them."""
    return [w.lower() for w in _WORD.findall(text)]


def parse_query(query: str) -> Query:
    tokens = words(query)
    kept = [t for t in tokens if t not in STOPWORDS] or tokens
    phrases = []
    for match in _IDENTIFIER.finditer(query):
        parts = words(match.group())
        if len(parts) > 1 and parts not in phrases:
            phrases.append(parts)
    return Query(list(dict.fromkeys(kept)), phrases)


def query_terms(query: str) -> list[str]:
    return parse_query(query).terms


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer  # PyStemmer: Snowball's C stemmers; "porter" is the algorithm FTS5's porter tokenizer runs

    return Stemmer.Stemmer("porter")


def stem_keys(tokens: list[str] | set[str]) -> set[str]:
    """The cache-scope keys of word tokens: their Porter stem (FTS5 matches by stem), cut to 6 characters
    so small differences between Porter implementations still land on the same key."""
    unique = list(set(tokens))
    return {s[:6] for s in _stemmer().stemWords(unique)}


def changed_keys(old: list[str], new: list[str]) -> set[str]:
    """Keys of the words whose count differs between a page's old and new text: a query without any of
    them ranks the page as before (up to length normalisation, which moves every score alike)."""
    from collections import Counter

    before = Counter(w for text in old for w in _WORD.findall(text.lower()))
    after = Counter(w for text in new for w in _WORD.findall(text.lower()))
    return stem_keys({w for w in before.keys() | after.keys() if before[w] != after[w]})


def document_keys(*texts: str) -> set[str]:
    found: set[str] = set()
    for text in texts:
        found.update(_WORD.findall(text.lower()))
    return stem_keys(found)


SNIPPET_CHARS = 240
# The snippet is looked for in the first SCAN_CHARS of a page (all of a typical page), with at most
# MAX_HITS_PER_TERM places per term: a 1 MB changelog costs what a 50 KB page does.
SCAN_CHARS = 50_000
MAX_HITS_PER_TERM = 64


def short_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def snippet(text: str, query: Query, limit: int = SNIPPET_CHARS) -> str:
    """The `limit`-character window of `text` holding the most distinct query terms (plain text, no markup),
    or the page's beginning when none is in its first SCAN_CHARS."""
    found = find_snippet(text, query, limit)
    return short_snippet(text, limit) if found is None else found


def find_snippet(text: str, query: Query, limit: int = SNIPPET_CHARS) -> str | None:
    """Like `snippet`, None when no query term is in the first SCAN_CHARS of `text`.

    Cheap on long pages: a bounded literal search per term, a sliding window counts them.
    """
    if not query.terms or not text:
        return None
    head = text[:SCAN_CHARS]
    lowered = head.lower()  # offsets must match `text`: lower() keeps the length except for rare letters
    if len(lowered) != len(head):
        lowered = head
    hits: list[tuple[int, str]] = []
    for stem in {s for s in _stemmer().stemWords(query.terms) if s}:
        # Literal searches (fast even on a 1 MB page), kept where the stem starts a word.
        start, found, tries = lowered.find(stem), 0, 0
        while start >= 0 and found < MAX_HITS_PER_TERM and tries < 4 * MAX_HITS_PER_TERM:
            tries += 1  # a short stem occurs inside many words: bounded work per term
            if start == 0 or not lowered[start - 1].isalnum():
                hits.append((start, stem))
                found += 1
            start = lowered.find(stem, start + len(stem))
    if not hits:
        return None
    hits.sort()
    best, best_score, left = 0, -1, 0
    for right in range(len(hits)):
        while hits[right][0] - hits[left][0] > limit * 2 // 3:
            left += 1
        score = len({h for _, h in hits[left:right + 1]}) * 1000 + (right - left)
        if score > best_score:
            best, best_score = hits[left][0], score
    start = max(0, best - limit // 6)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < best else start
    window = text[start:start + limit]
    if start + limit < len(text):
        window = window.rsplit(" ", 1)[0] + "…"
    return ("…" if start else "") + window
