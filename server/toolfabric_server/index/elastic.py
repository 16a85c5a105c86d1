"""The production local index on Elasticsearch (8.x, through the official client).

Five indices under one prefix: pages (BM25 on title, headings and body, english analyzer),
images (fingerprints by content hash; features stored, not indexed), occurrences (where an image
appears, its alt text/caption searchable), meta (the write generation and its image and clear
counters) and terms (the generation at which a page holding each term last changed, so cached
answers are dropped only for queries a change can affect).
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError, helpers

from toolfabric_server.index import ranking
from toolfabric_server.index.base import ImageOccurrence, SearchIndex
from toolfabric_server.index.documents import Page
from toolfabric_server.index.imagematch import Fingerprint
from toolfabric_server.index.results import ImageResult, WebResult
from toolfabric_server.index.terms import changed_keys, document_keys, parse_query, query_terms, stem_keys

_TEXT = {"type": "text", "analyzer": "english"}
_MAPPINGS: dict[str, dict[str, Any]] = {
    "pages": {"properties": {
        "url": {"type": "keyword"}, "title": _TEXT, "headings": _TEXT, "body": _TEXT,
        "kind": {"type": "keyword"}, "indexed_at": {"type": "date", "format": "epoch_second"},
        "content_hash": {"type": "keyword"},
    }},
    "images": {"properties": {
        "content_hash": {"type": "keyword"}, "phash": {"type": "long"},
        "width": {"type": "integer"}, "height": {"type": "integer"}, "features": {"type": "binary"},
    }},
    "occurrences": {"properties": {
        "content_hash": {"type": "keyword"}, "page_url": {"type": "keyword"},
        "image_url": {"type": "keyword"}, "title": _TEXT,
    }},
    "meta": {"properties": {"value": {"type": "long"}}},
    "terms": {"properties": {"value": {"type": "long"}}},
}


def _doc_id(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class ElasticsearchIndex(SearchIndex):
    name = "elasticsearch"

    def __init__(self, url: str, prefix: str = "toolfabric", timeout_s: float = 10.0) -> None:
        super().__init__()
        self._es = Elasticsearch(url, request_timeout=timeout_s)
        self._names = {kind: f"{prefix}-index-{kind}" for kind in _MAPPINGS}
        for kind, mappings in _MAPPINGS.items():
            name = self._names[kind]
            if not self._es.indices.exists(index=name):
                try:
                    self._es.indices.create(index=name, mappings=mappings)
                except Exception as exc:  # another worker created it between exists and create
                    if "resource_already_exists_exception" not in str(exc):
                        raise
            else:  # an index from an older release gains the new fields (adding fields is allowed)
                self._es.indices.put_mapping(index=name, properties=mappings["properties"])

    def _bump(self, counter: str = "generation") -> int:
        resp = self._es.update(
            index=self._names["meta"], id=counter, script={"source": "ctx._source.value += 1"},
            upsert={"value": 1}, retry_on_conflict=10, refresh="wait_for", source=True,
        )
        return int(resp["get"]["_source"]["value"])

    def _counter(self, counter: str) -> int:
        try:
            return int(self._es.get(index=self._names["meta"], id=counter)["_source"]["value"])
        except NotFoundError:
            return 0

    def _bulk(self, actions: list[dict[str, Any]], images: bool = False) -> int:
        if actions:
            helpers.bulk(self._es, actions, refresh="wait_for")
        if images:
            self._bump("images")
        return self._bump()

    def upsert_pages(self, pages: list[Page]) -> int:
        latest = {p.url: p for p in pages}
        if not latest:
            return 0
        found = self._es.mget(index=self._names["pages"], ids=[_doc_id(u) for u in latest],
                              source_includes=["url", "title", "headings", "body", "content_hash"])["docs"]
        stored = {d["_source"]["url"]: d["_source"] for d in found if d.get("found")}
        changed = [p for p in latest.values() if stored.get(p.url, {}).get("content_hash") != p.content_hash]
        if not changed:
            return 0  # re-reading an unchanged page writes nothing and keeps every cached answer
        fields = ("title", "headings", "body")
        keys = document_keys(*(t for p in changed if p.url not in stored for t in (p.title, p.headings, p.text)))
        for p in changed:
            if p.url in stored:
                keys |= changed_keys([str(stored[p.url].get(f, "")) for f in fields], [p.title, p.headings, p.text])
        now = int(time.time())
        generation = self._bulk([{
            "_index": self._names["pages"], "_id": _doc_id(p.url),
            "_source": {"url": p.url, "title": p.title, "headings": p.headings, "body": p.text, "kind": p.kind,
                        "indexed_at": now, "content_hash": p.content_hash},
        } for p in changed])
        helpers.bulk(self._es, [{"_index": self._names["terms"], "_id": key, "_source": {"value": generation}}
                                for key in sorted(keys)], refresh="wait_for")
        return len(changed)

    def text_scope(self, query: str) -> str:
        keys = sorted(stem_keys(parse_query(query).terms))
        epoch = self._counter("epoch")
        if not keys:
            return f"{epoch}"
        docs = self._es.mget(index=self._names["terms"], ids=keys)["docs"]
        versions = [(d["_id"], d["_source"]["value"]) for d in docs if d.get("found")]
        return f"{epoch}." + hashlib.sha256(repr(versions).encode()).hexdigest()[:16]

    def image_scope(self) -> str:
        return f"{self._counter('epoch')}.{self._counter('images')}"

    def upsert_images(self, fingerprints: list[Fingerprint]) -> None:
        self._bulk([{
            "_index": self._names["images"], "_id": f.content_hash,
            "_source": {
                "content_hash": f.content_hash, "phash": f.phash, "width": f.width, "height": f.height,
                "features": base64.b64encode(f.features_blob()).decode("ascii"),
            },
        } for f in fingerprints], images=True)

    def set_occurrences(self, page_url: str, occurrences: list[ImageOccurrence]) -> None:
        self._es.delete_by_query(
            index=self._names["occurrences"], query={"term": {"page_url": page_url}}, refresh=True, conflicts="proceed"
        )
        self._bulk([{
            "_index": self._names["occurrences"], "_id": _doc_id(o.page_url, o.image_url),
            "_source": {"content_hash": o.content_hash, "page_url": o.page_url, "image_url": o.image_url,
                        "title": o.title},
        } for o in occurrences], images=True)

    def search_text(self, query: str, k: int) -> list[WebResult]:
        parsed = parse_query(query)
        if not parsed.terms:
            return []
        weights = [f"title^{ranking.WEIGHTS[0]:g}", f"headings^{ranking.WEIGHTS[1]:g}", f"body^{ranking.WEIGHTS[2]:g}"]
        # The embedded engine's ranking in Elasticsearch's terms: weighted fields, identifiers found whole.
        should: list[dict[str, Any]] = [
            {"multi_match": {"query": " ".join(parts), "fields": weights, "type": "phrase",
                             "boost": ranking.PHRASE_BOOST}}
            for parts in parsed.phrases]
        resp = self._es.search(
            index=self._names["pages"], size=k,
            # Equal scores by URL: top-k is a prefix of top-(k+n).
            sort=[{"_score": "desc"}, {"url": "asc"}],
            query={"bool": {
                "must": {"multi_match": {"query": " ".join(parsed.terms), "fields": weights,
                                         "type": "most_fields", "operator": "or"}},
                "should": should}},
            # The page's beginning when only the title matched (the body itself is never sent back).
            highlight={"fields": {"body": {"fragment_size": 240, "number_of_fragments": 1, "no_match_size": 240,
                                           "pre_tags": [""], "post_tags": [""]}}},
            source_includes=["url", "title"],
        )
        out = []
        for hit in resp["hits"]["hits"]:
            src = hit["_source"]
            frags = hit.get("highlight", {}).get("body") or []
            out.append(WebResult(src["title"], src["url"], frags[0] if frags else ""))
        return out

    def search_image_text(self, query: str, k: int) -> list[ImageResult]:
        terms = query_terms(query)
        if not terms:
            return []
        resp = self._es.search(
            index=self._names["occurrences"], size=k, query={"match": {"title": " ".join(terms)}}
        )
        return [ImageResult(h["_source"]["title"], h["_source"]["page_url"], h["_source"]["image_url"])
                for h in resp["hits"]["hits"]]

    def image_features(self) -> list[tuple[str, int, bytes]]:
        rows = [
            (h["_source"]["content_hash"], int(h["_source"]["phash"]), base64.b64decode(h["_source"]["features"]))
            for h in helpers.scan(self._es, index=self._names["images"], query={"query": {"match_all": {}}})
        ]
        return sorted(rows)

    def occurrences_of(self, content_hashes: list[str]) -> dict[str, list[ImageOccurrence]]:
        if not content_hashes:
            return {}
        out: dict[str, list[ImageOccurrence]] = {}
        for h in helpers.scan(self._es, index=self._names["occurrences"],
                              query={"query": {"terms": {"content_hash": content_hashes}}}):
            s = h["_source"]
            out.setdefault(s["content_hash"], []).append(
                ImageOccurrence(s["content_hash"], s["page_url"], s["image_url"], s["title"]))
        for occs in out.values():
            occs.sort(key=lambda o: o.page_url)
        return out

    def generation(self) -> int:
        return self._counter("generation")

    def counts(self) -> dict[str, int]:
        return {kind: int(self._es.count(index=self._names[kind])["count"])
                for kind in ("pages", "images", "occurrences")}

    def clear(self) -> None:
        for kind in ("pages", "images", "occurrences", "terms"):
            self._es.delete_by_query(index=self._names[kind], query={"match_all": {}}, refresh=True,
                                     conflicts="proceed")
        self._bump("epoch")
        self._bump("images")
        self._bump()

    def close(self) -> None:
        self._es.close()
