"""Exact and near-duplicate pages: the same text under two URLs is indexed once.

Exact copies share a content hash. Near copies (a page and its print version, one differing
only in a date or a navigation line) share most word 3-grams: their 64-bit SimHash fingerprints
differ in few bits. Fingerprints are split into four 16-bit bands, so two within 3 bits of each
other always share a band and only pages sharing a band are compared.
"""

from __future__ import annotations

import hashlib

import numpy as np

from toolfabric_server.index.terms import words

_BANDS = 4


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_POSITION = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
# Each distinct word is hashed once per process (blake2b: stable across runs, unlike hash()).
_word_hashes: dict[str, int] = {}
_MAX_WORDS = 1_000_000


def _word_hash(word: str) -> int:
    found = _word_hashes.get(word)
    if found is None:
        if len(_word_hashes) >= _MAX_WORDS:
            _word_hashes.clear()
        found = _word_hashes[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return found


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves about half the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def simhash(text: str) -> int:
    """64-bit SimHash over the distinct word 3-grams (one gram of all words when there are fewer than three).

    Vectorised: words are hashed once each, a 3-gram's hash mixes its three word hashes by position, and
    the bit votes are summed over all 3-grams at once (a per-gram hash in Python was most of indexing)."""
    tokens = words(text)
    if not tokens:
        tokens = [""]
    ids = np.fromiter(map(_word_hash, tokens), dtype=np.uint64, count=len(tokens))
    if len(ids) < 3:
        ids = np.concatenate([ids, np.zeros(3 - len(ids), dtype=np.uint64)])
    grams = np.unique(_mix(ids[:-2] * _POSITION[0]) ^ _mix(ids[1:-1] * _POSITION[1]) ^ _mix(ids[2:] * _POSITION[2]))
    grams = _mix(grams)
    bits = np.unpackbits(grams.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    votes = bits.sum(axis=0, dtype=np.int64) * 2 - len(grams)
    return int(np.packbits(votes > 0, bitorder="little").view(np.uint64)[0])


class Duplicates:
    """Remembers the pages seen in one indexing run; `original_of` names the page a new one copies."""

    def __init__(self, max_bits: int = 3) -> None:
        self.max_bits = max_bits
        self._exact: dict[str, str] = {}
        self._bands: list[dict[int, list[tuple[int, str]]]] = [{} for _ in range(_BANDS)]

    def original_of(self, url: str, content_hash: str, text: str) -> str | None:
        if content_hash in self._exact:
            return self._exact[content_hash]
        self._exact[content_hash] = url
        if self.max_bits <= 0 or len(text) < 200:  # short pages legitimately look alike
            return None
        fp = simhash(text)
        bands = [(fp >> (16 * i)) & 0xFFFF for i in range(_BANDS)]
        for i, band in enumerate(bands):
            for other, other_url in self._bands[i].get(band, []):
                if bin(fp ^ other).count("1") <= self.max_bits:
                    return other_url
        for i, band in enumerate(bands):
            self._bands[i].setdefault(band, []).append((fp, url))
        return None
