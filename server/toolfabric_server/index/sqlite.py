"""The embedded local index: SQLite FTS5 (BM25) in one file under the data directory.

Why SQLite FTS5 rather than tantivy: it ships inside Python (no extra wheel to build or
trust), its write-ahead log lets every Celery worker process read while one writes (tantivy
allows one writer per index directory, held by a lock file), it has BM25 ranking with column
weights, phrase and NEAR queries and a Porter stemmer built in, and the same file also holds the
image fingerprints and their occurrences in ordinary tables, updated in the same transaction as the text.

A query ranks on the index alone (BM25 over title, headings, body), re-scores the best candidates
(index/ranking.py), then reads the head of only the k pages returned for their snippets:
FTS5's own snippet() re-tokenises every matching page and was most of a query's time on real pages.
Each write records, per word stem, the generation at which a page holding it changed
(`term_versions`): `text_scope` keys cached answers by those, so a change drops only the answers
it can affect, and an unchanged page (same content hash) is not written at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path

from toolfabric_server.common.sqlite_db import ThreadConnections, connect
from toolfabric_server.index import ranking
from toolfabric_server.index.base import ImageOccurrence, SearchIndex
from toolfabric_server.index.documents import Page
from toolfabric_server.index.imagematch import Fingerprint
from toolfabric_server.index.results import ImageResult, WebResult
from toolfabric_server.index.terms import (
    SCAN_CHARS,
    Query,
    changed_keys,
    document_keys,
    find_snippet,
    parse_query,
    query_terms,
    short_snippet,
    stem_keys,
)

log = logging.getLogger(__name__)

# How far into a long page a snippet is looked for, SCAN_CHARS at a time, before showing its beginning.
MAX_SNIPPET_SCAN = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages(
  id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, title TEXT NOT NULL, headings TEXT NOT NULL,
  body TEXT NOT NULL, kind TEXT NOT NULL, indexed_at REAL NOT NULL, content_hash TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS pages_fts USING fts5(
  title, headings, body, content='pages', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS pages_ai AFTER INSERT ON pages BEGIN
  INSERT INTO pages_fts(rowid, title, headings, body) VALUES (new.id, new.title, new.headings, new.body); END;
CREATE TRIGGER IF NOT EXISTS pages_ad AFTER DELETE ON pages BEGIN
  INSERT INTO pages_fts(pages_fts, rowid, title, headings, body)
  VALUES ('delete', old.id, old.title, old.headings, old.body); END;
CREATE TRIGGER IF NOT EXISTS pages_au AFTER UPDATE ON pages BEGIN
  INSERT INTO pages_fts(pages_fts, rowid, title, headings, body)
  VALUES ('delete', old.id, old.title, old.headings, old.body);
  INSERT INTO pages_fts(rowid, title, headings, body) VALUES (new.id, new.title, new.headings, new.body); END;
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
INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', 0);
INSERT OR IGNORE INTO meta(key, value) VALUES ('images', 0);
-- The generation at which a page holding each term (by stem key, terms.stem_keys) last changed.
CREATE TABLE IF NOT EXISTS term_versions(key TEXT PRIMARY KEY, generation INTEGER NOT NULL) WITHOUT ROWID;
"""
# An index file from before headings and content hashes is emptied (re-index it).
_OLD_LAYOUT = [("TRIGGER", t) for t in ("pages_ai", "pages_ad", "pages_au", "occ_ai", "occ_ad")] + [
    ("TABLE", t) for t in ("pages_fts", "pages", "occurrences_fts", "occurrences", "images", "meta")]

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


def _phrase(parts: list[str]) -> str:
    return _quote(" ".join(parts))


def fts_query(query: str) -> str:
    """OR of quoted terms: BM25 ranks by how many and how rare; quoting defuses FTS syntax."""
    return " OR ".join(_quote(t) for t in query_terms(query))


class SQLiteIndex(SearchIndex):
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        _drop_old_layout(Path(path))
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
            ("INSERT INTO pages_fts(rowid, title, headings, body) VALUES (?, ?, '', ?)",
             [(-1 - i, title, body) for i in range(FILLER_ROWS)]),
            ("INSERT INTO occurrences_fts(rowid, title) VALUES (?, ?)",
             [(-1 - i, " ".join([_FILLER_TOKEN] * 8)) for i in range(FILLER_ROWS)]),
        ])

    @property
    def path(self) -> Path:
        return self._cons.path

    def _write(self, statements: list[tuple[str, list[tuple]]], *, images: bool = False, epoch: bool = False,
               keys: set[str] | None = None) -> None:
        """One transaction: the statements, then the generation and what it invalidates."""
        bump: list[tuple[str, list[tuple]]] = [("UPDATE meta SET value = value + 1 WHERE key = 'generation'", [()])]
        if images:
            bump.append(("UPDATE meta SET value = value + 1 WHERE key = 'images'", [()]))
        if epoch:
            bump.append(("UPDATE meta SET value = value + 1 WHERE key = 'epoch'", [()]))
        if keys:
            bump.append((
                "INSERT INTO term_versions(key, generation) SELECT ?, value FROM meta WHERE key = 'generation' "
                "ON CONFLICT(key) DO UPDATE SET generation = excluded.generation",
                [(k,) for k in sorted(keys)],
            ))
        self._cons.transaction([*statements, *bump])

    def upsert_pages(self, pages: list[Page]) -> int:
        if not pages:
            return 0
        latest = {p.url: p for p in pages}  # the last version of a URL given twice wins
        con = self._cons.get()
        marks = ",".join("?" * len(latest))
        stored = dict(con.execute(
            f"SELECT url, content_hash FROM pages WHERE url IN ({marks})", list(latest)  # noqa: S608 - placeholders
        ).fetchall())
        changed = [p for p in latest.values() if stored.get(p.url) != p.content_hash]
        if not changed:
            return 0  # re-reading an unchanged page writes nothing and keeps every cached answer
        # Queries that can see a difference: those with a word the change added, removed or re-counted
        # (every word of a new page).
        old_urls = [p.url for p in changed if p.url in stored]
        before: dict[str, list[str]] = {}
        if old_urls:
            marks = ",".join("?" * len(old_urls))
            for url, *texts in con.execute(
                    f"SELECT url, title, headings, body FROM pages WHERE url IN ({marks})", old_urls):  # noqa: S608
                before[url] = texts
        keys = document_keys(*(t for p in changed if p.url not in before for t in (p.title, p.headings, p.text)))
        for p in changed:
            if p.url in before:
                keys |= changed_keys(before[p.url], [p.title, p.headings, p.text])
        now = time.time()
        rows = [(p.url, p.title, p.headings, p.text, p.kind, now, p.content_hash) for p in changed]
        self._write([(
            "INSERT INTO pages(url, title, headings, body, kind, indexed_at, content_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET title=excluded.title, "
            "headings=excluded.headings, body=excluded.body, kind=excluded.kind, indexed_at=excluded.indexed_at, "
            "content_hash=excluded.content_hash",
            rows,
        )], keys=keys)
        return len(changed)

    def upsert_images(self, fingerprints: list[Fingerprint]) -> None:
        if not fingerprints:
            return
        con = self._cons.get()
        marks = ",".join("?" * len(fingerprints))
        known = {r[0] for r in con.execute(
            f"SELECT content_hash FROM images WHERE content_hash IN ({marks})",  # noqa: S608 - placeholders
            [f.content_hash for f in fingerprints])}
        rows = [(f.content_hash, f.phash, f.width, f.height, f.features_blob()) for f in fingerprints
                if f.content_hash not in known]  # keyed by content: a known hash is the same image
        if rows:
            self._write([("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?)", rows)], images=True)

    def set_occurrences(self, page_url: str, occurrences: list[ImageOccurrence]) -> None:
        con = self._cons.get()
        stored = sorted(con.execute(
            "SELECT page_url, image_url, content_hash, title FROM occurrences WHERE page_url = ?", (page_url,)))
        wanted = sorted({(o.page_url, o.image_url, o.content_hash, o.title) for o in occurrences})
        if stored == wanted:
            return  # the same placements again: nothing to write, no cached image answer dropped
        self._write([
            ("DELETE FROM occurrences WHERE page_url = ?", [(page_url,)]),
            (
                "INSERT OR REPLACE INTO occurrences(page_url, image_url, content_hash, title) VALUES (?, ?, ?, ?)",
                wanted,
            ),
        ], images=True)

    def _without_common_terms(self, terms: list[str]) -> list[str]:
        con = self._cons.get()
        pages = con.execute("SELECT coalesce(max(id), 0) FROM pages").fetchone()[0]
        cutoff = max(COMMON_MIN_DF, COMMON_FRACTION * pages)
        if pages <= cutoff:
            return terms
        df = {t: con.execute("SELECT count(*) FROM pages_fts WHERE pages_fts MATCH ?", (_quote(t),)).fetchone()[0]
              for t in terms}
        return [t for t in terms if df[t] <= cutoff] or terms

    def _boosted(self, query: Query, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Re-score BM25's best candidates: identifiers found whole, query terms close together."""
        if not ranked:
            return ranked
        con = self._cons.get()
        ids = {r for r, _ in ranked}

        def matching(expr: str) -> set[int]:
            # Unfiltered: FTS5 answers phrase/NEAR queries from its position lists fast, while adding
            # `rowid IN (…)` makes it restart per candidate (measured 40x slower).
            return {r for (r,) in con.execute("SELECT rowid FROM pages_fts WHERE pages_fts MATCH ?", (expr,))} & ids

        factor = dict.fromkeys(ids, 1.0)
        for parts in query.phrases:
            whole = matching(_phrase(parts))
            # Only an identifier that tells candidates apart earns its boost: `conf.py` on most pages does not.
            if len(whole) <= len(ids) // 2:
                for r in whole:
                    factor[r] += ranking.PHRASE_BOOST
        pairs = list(zip(query.terms, query.terms[1:], strict=False))
        near = ranking.NEAR_TOKENS
        for boost, column in ((ranking.NEAR_BOOST, ""), (ranking.HEADING_NEAR_BOOST, "{title headings}: ")):
            for a, b in pairs if boost else []:  # neighbouring query words close together
                for r in matching(f"{column}NEAR({_quote(a)} {_quote(b)}, {near})"):
                    factor[r] += boost
        if ranking.COVERAGE_BOOST and len(query.terms) > 1:
            have = Counter(r for t in query.terms for r in matching(_quote(t)))
            for r, n in have.items():
                factor[r] += ranking.COVERAGE_BOOST * (n / len(query.terms)) ** 2
        # bm25() is negative (lower is better): scale its magnitude up by the boosts; equal scores by page id.
        return sorted(((r, score * factor[r]) for r, score in ranked), key=lambda x: (x[1], x[0]))

    def search_text(self, query: str, k: int) -> list[WebResult]:
        parsed = parse_query(query)
        terms = parsed.terms
        if not terms:
            return []
        if len(terms) > 1:
            terms = self._without_common_terms(terms)
        match = " OR ".join([*(_quote(t) for t in terms), *(_phrase(p) for p in parsed.phrases)])
        con = self._cons.get()
        # Rank on the index alone (no page text read), then read only the k pages returned. One order whatever
        # k: the best CANDIDATES by BM25 re-scored (the boosts judge them among themselves, never among k),
        # then the rest by BM25, equal scores by page id, so top-k is always a prefix of top-(k+n).
        ranked = con.execute(
            "SELECT rowid, bm25(pages_fts, ?, ?, ?) AS score FROM pages_fts WHERE pages_fts MATCH ? "
            "ORDER BY score, rowid LIMIT ?",
            (*ranking.WEIGHTS, match, max(k, ranking.CANDIDATES)),
        ).fetchall()
        head = self._boosted(Query(terms, parsed.phrases), ranked[:ranking.CANDIDATES])
        top = [*head, *ranked[ranking.CANDIDATES:]][:k]
        if not top:
            return []
        marks = ",".join("?" * len(top))
        # Only the head of a page is read for its snippet: a 3 MB page costs what a 50 KB one does.
        rows = {r[0]: r[1:] for r in con.execute(
            f"SELECT id, url, title, substr(body, 1, {SCAN_CHARS}) FROM pages WHERE id IN ({marks})",  # noqa: S608
            [r for r, _ in top])}
        shown = Query(parsed.terms, parsed.phrases)
        return [WebResult(rows[r][1], rows[r][0], self._snippet(r, rows[r][2], shown)) for r, _ in top if r in rows]

    def _snippet(self, rowid: int, head: str, query: Query) -> str:
        """The snippet from the page's head, else from the next SCAN_CHARS chunks (up to MAX_SNIPPET_SCAN)."""
        found = find_snippet(head, query)
        offset = len(head)
        while found is None and len(head) == SCAN_CHARS and offset < MAX_SNIPPET_SCAN:
            row = self._cons.get().execute("SELECT substr(body, ?, ?) FROM pages WHERE id = ?",
                                           (offset + 1, SCAN_CHARS, rowid)).fetchone()
            chunk = row[0] if row else ""
            if not chunk:
                break
            found = find_snippet(chunk, query)
            offset += len(chunk)
        return short_snippet(head) if found is None else found

    def text_scope(self, query: str) -> str:
        parsed = parse_query(query)
        keys = sorted(stem_keys(parsed.terms))
        con = self._cons.get()
        epoch = con.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
        if not keys:
            return f"{epoch}"
        marks = ",".join("?" * len(keys))
        versions = con.execute(
            f"SELECT key, generation FROM term_versions WHERE key IN ({marks}) ORDER BY key", keys  # noqa: S608
        ).fetchall()
        digest = hashlib.sha256(repr(versions).encode()).hexdigest()[:16]
        return f"{epoch}.{digest}"

    def image_scope(self) -> str:
        con = self._cons.get()
        epoch, images = (con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
                         for key in ("epoch", "images"))
        return f"{epoch}.{images}"

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
        tables = ("pages", "images", "occurrences", "term_versions")
        self._write([(f"DELETE FROM {t}", [()]) for t in tables], images=True, epoch=True)  # noqa: S608

    def close(self) -> None:
        self._cons.close()


def _drop_old_layout(path: Path) -> None:
    """Drop the pages of an index file written before headings and content hashes existed."""
    if not path.exists():
        return
    con = connect(path)
    try:
        columns = [r[1] for r in con.execute("PRAGMA table_info(pages)")]
        if columns and "content_hash" not in columns:
            log.warning("%s is an index in an older layout; it is emptied: re-index with `toolfabric index`", path)
            for kind, name in _OLD_LAYOUT:
                con.execute(f"DROP {kind} IF EXISTS {name}")
    finally:
        con.close()
