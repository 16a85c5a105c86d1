"""The embedded local index: SQLite FTS5 (BM25) in one file under the data directory.

Why SQLite FTS5 rather than tantivy: it ships inside Python (no extra wheel to build or
trust), its write-ahead log lets every Celery worker process read while one writes (tantivy
allows one writer per index directory, held by a lock file), it has BM25 ranking, snippets and
a Porter stemmer built in, and the same file also holds the image fingerprints and their
occurrences in ordinary tables, updated in the same transaction as the text.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from services.common.sqlite_db import ThreadConnections
from services.index.base import ImageOccurrence, SearchIndex, query_terms, short_snippet
from services.index.documents import Page
from services.index.imagematch import Fingerprint
from services.index.results import ImageResult, WebResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages(
  id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
  kind TEXT NOT NULL, indexed_at REAL NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS pages_fts USING fts5(
  title, body, content='pages', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS pages_ai AFTER INSERT ON pages BEGIN
  INSERT INTO pages_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END;
CREATE TRIGGER IF NOT EXISTS pages_ad AFTER DELETE ON pages BEGIN
  INSERT INTO pages_fts(pages_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body); END;
CREATE TRIGGER IF NOT EXISTS pages_au AFTER UPDATE ON pages BEGIN
  INSERT INTO pages_fts(pages_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
  INSERT INTO pages_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END;
CREATE TABLE IF NOT EXISTS images(
  content_hash TEXT PRIMARY KEY, phash INTEGER NOT NULL, width INTEGER, height INTEGER, features BLOB);
CREATE TABLE IF NOT EXISTS occurrences(
  id INTEGER PRIMARY KEY, page_url TEXT NOT NULL, image_url TEXT NOT NULL, content_hash TEXT NOT NULL,
  title TEXT NOT NULL, UNIQUE(page_url, image_url));
CREATE INDEX IF NOT EXISTS occurrences_hash ON occurrences(content_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS occurrences_fts USING fts5(
  title, content='occurrences', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS occ_ai AFTER INSERT ON occurrences BEGIN
  INSERT INTO occurrences_fts(rowid, title) VALUES (new.id, new.title); END;
CREATE TRIGGER IF NOT EXISTS occ_ad AFTER DELETE ON occurrences BEGIN
  INSERT INTO occurrences_fts(occurrences_fts, rowid, title) VALUES ('delete', old.id, old.title); END;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', 0);
"""

# FTS5's bm25() uses idf = ln((N - n + 0.5) / (n + 0.5)) clamped at ~0, without Lucene's "+1":
# a term in more than half the documents scores nothing, which in a small corpus (the demo's
# eight pages) zeroes almost every query term. A fixed block of filler rows (negative rowids,
# absent from the content table, so never returned) keeps every real term's idf positive and
# page-length statistics near a typical page; at 100k pages their effect is negligible.
FILLER_ROWS = 1000
_FILLER_TOKEN = "zzfiller"  # noqa: S105 - a token, not a password


# A query term in more than this share of the pages (and more than COMMON_MIN_DF of them) is
# left out when rarer terms remain: its idf adds almost nothing to the ranking, while scoring
# every page that has it is most of the cost (Lucene's "common terms" cutoff).
COMMON_FRACTION = 0.05
COMMON_MIN_DF = 2000


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def fts_query(query: str) -> str:
    """OR of quoted terms: BM25 ranks by how many and how rare; quoting defuses FTS syntax."""
    return " OR ".join(_quote(t) for t in query_terms(query))


class SQLiteIndex(SearchIndex):
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._cons = ThreadConnections(Path(path), _SCHEMA)
        with contextlib.suppress(sqlite3.IntegrityError):  # another process added it first
            self._add_filler()

    def _add_filler(self) -> None:
        con = self._cons.get()
        if con.execute("SELECT 1 FROM meta WHERE key = 'filler'").fetchone() is not None:
            return
        title, body = " ".join([_FILLER_TOKEN] * 6), " ".join([_FILLER_TOKEN] * 100)
        # A concurrent second initialiser fails on the meta primary key and rolls back: filler goes in once.
        self._cons.transaction([
            ("INSERT INTO meta(key, value) VALUES ('filler', ?)", [(FILLER_ROWS,)]),
            ("INSERT INTO pages_fts(rowid, title, body) VALUES (?, ?, ?)",
             [(-1 - i, title, body) for i in range(FILLER_ROWS)]),
            ("INSERT INTO occurrences_fts(rowid, title) VALUES (?, ?)",
             [(-1 - i, " ".join([_FILLER_TOKEN] * 8)) for i in range(FILLER_ROWS)]),
        ])

    @property
    def path(self) -> Path:
        return self._cons.path

    def _write(self, statements: list[tuple[str, list[tuple]]]) -> None:
        self._cons.transaction([*statements, ("UPDATE meta SET value = value + 1 WHERE key = 'generation'", [()])])

    def upsert_pages(self, pages: list[Page]) -> None:
        now = time.time()
        rows = [(p.url, p.title, p.text, p.kind, now) for p in pages]
        self._write([(
            "INSERT INTO pages(url, title, body, kind, indexed_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(url) DO UPDATE SET title=excluded.title, body=excluded.body, kind=excluded.kind, "
            "indexed_at=excluded.indexed_at",
            rows,
        )])

    def upsert_images(self, fingerprints: list[Fingerprint]) -> None:
        rows = [(f.content_hash, f.phash, f.width, f.height, f.features_blob()) for f in fingerprints]
        self._write([("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?)", rows)])

    def set_occurrences(self, page_url: str, occurrences: list[ImageOccurrence]) -> None:
        self._write([
            ("DELETE FROM occurrences WHERE page_url = ?", [(page_url,)]),
            (
                "INSERT OR REPLACE INTO occurrences(page_url, image_url, content_hash, title) VALUES (?, ?, ?, ?)",
                [(o.page_url, o.image_url, o.content_hash, o.title) for o in occurrences],
            ),
        ])

    def _without_common_terms(self, terms: list[str]) -> list[str]:
        con = self._cons.get()
        pages = con.execute("SELECT coalesce(max(id), 0) FROM pages").fetchone()[0]
        cutoff = max(COMMON_MIN_DF, COMMON_FRACTION * pages)
        if pages <= cutoff:
            return terms
        df = {t: con.execute("SELECT count(*) FROM pages_fts WHERE pages_fts MATCH ?", (_quote(t),)).fetchone()[0]
              for t in terms}
        return [t for t in terms if df[t] <= cutoff] or terms

    def search_text(self, query: str, k: int) -> list[WebResult]:
        terms = query_terms(query)
        if not terms:
            return []
        if len(terms) > 1:
            terms = self._without_common_terms(terms)
        match = " OR ".join(_quote(t) for t in terms)
        rows = self._cons.get().execute(
            # bm25 column weights: a title match counts five times a body match.
            "SELECT p.url, p.title, snippet(pages_fts, 1, '', '', '…', 40), p.body "
            "FROM pages_fts JOIN pages p ON p.id = pages_fts.rowid WHERE pages_fts MATCH ? "
            "ORDER BY bm25(pages_fts, 5.0, 1.0) LIMIT ?",
            (match, k),
        ).fetchall()
        return [WebResult(title, url, snip.strip() or short_snippet(body)) for url, title, snip, body in rows]

    def search_image_text(self, query: str, k: int) -> list[ImageResult]:
        match = fts_query(query)
        if not match:
            return []
        rows = self._cons.get().execute(
            "SELECT o.title, o.page_url, o.image_url FROM occurrences_fts JOIN occurrences o "
            "ON o.id = occurrences_fts.rowid WHERE occurrences_fts MATCH ? ORDER BY bm25(occurrences_fts) LIMIT ?",
            (match, k),
        ).fetchall()
        return [ImageResult(*r) for r in rows]

    def image_features(self) -> list[tuple[str, int, bytes]]:
        rows = self._cons.get().execute("SELECT content_hash, phash, features FROM images ORDER BY content_hash")
        return [(h, int(p), bytes(f)) for h, p, f in rows]

    def occurrences_of(self, content_hashes: list[str]) -> dict[str, list[ImageOccurrence]]:
        if not content_hashes:
            return {}
        marks = ",".join("?" * len(content_hashes))
        rows = self._cons.get().execute(
            f"SELECT content_hash, page_url, image_url, title FROM occurrences WHERE content_hash IN ({marks}) "  # noqa: S608 - only placeholders
            "ORDER BY page_url",
            content_hashes,
        )
        out: dict[str, list[ImageOccurrence]] = {}
        for h, page, image, title in rows:
            out.setdefault(h, []).append(ImageOccurrence(h, page, image, title))
        return out

    def generation(self) -> int:
        row = self._cons.get().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        con = self._cons.get()
        return {
            t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608 - fixed names
            for t in ("pages", "images", "occurrences")
        }

    def clear(self) -> None:
        self._write([(f"DELETE FROM {t}", [()]) for t in ("pages", "images", "occurrences")])  # noqa: S608

    def close(self) -> None:
        self._cons.close()
