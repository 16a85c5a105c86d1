"""Exact and near-duplicate pages: the same text under two URLs is indexed once.

Exact copies share a content hash. Near copies (a page and its print version, one differing
only in a date or a navigation line) share most word 3-grams: their 64-bit SimHash fingerprints
differ in few bits. Fingerprints are split into four 16-bit bands, so two within 3 bits of each
other always share a band and only pages sharing a band are compared.
"""

from __future__ import annotations

import hashlib

import numpy as np

from services.index.terms import words

_BANDS = 4


def simhash(text: str) -> int:
    tokens = words(text)
    shingles = {" ".join(tokens[i:i + 3]) for i in range(max(1, len(tokens) - 2))}
    hashes = np.fromiter(
        (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in shingles),
        dtype=np.uint64, count=len(shingles))
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    votes = bits.sum(axis=0, dtype=np.int64) * 2 - len(shingles)
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
