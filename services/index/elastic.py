"""The production local index on Elasticsearch (8.x, through the official client).

Four indices under one prefix: pages (BM25 on title and body, english analyzer), images
(fingerprints by content hash; features stored, not indexed), occurrences (where an image
appears, its alt text/caption searchable) and meta (the write generation).
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError, helpers

from services.index.base import ImageOccurrence, SearchIndex, query_terms, short_snippet
from services.index.documents import Page
from services.index.imagematch import Fingerprint
from services.index.results import ImageResult, WebResult

_TEXT = {"type": "text", "analyzer": "english"}
_MAPPINGS: dict[str, dict[str, Any]] = {
    "pages": {"properties": {
        "url": {"type": "keyword"}, "title": _TEXT, "body": _TEXT,
        "kind": {"type": "keyword"}, "indexed_at": {"type": "date", "format": "epoch_second"},
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

    def _bump(self) -> None:
        self._es.update(
            index=self._names["meta"], id="generation", script={"source": "ctx._source.value += 1"},
            upsert={"value": 1}, retry_on_conflict=10, refresh="wait_for",
        )

    def _bulk(self, actions: list[dict[str, Any]]) -> None:
        if actions:
            helpers.bulk(self._es, actions, refresh="wait_for")
        self._bump()

    def upsert_pages(self, pages: list[Page]) -> None:
        now = int(time.time())
        self._bulk([{
            "_index": self._names["pages"], "_id": _doc_id(p.url),
            "_source": {"url": p.url, "title": p.title, "body": p.text, "kind": p.kind, "indexed_at": now},
        } for p in pages])

    def upsert_images(self, fingerprints: list[Fingerprint]) -> None:
        self._bulk([{
            "_index": self._names["images"], "_id": f.content_hash,
            "_source": {
                "content_hash": f.content_hash, "phash": f.phash, "width": f.width, "height": f.height,
                "features": base64.b64encode(f.features_blob()).decode("ascii"),
            },
        } for f in fingerprints])

    def set_occurrences(self, page_url: str, occurrences: list[ImageOccurrence]) -> None:
        self._es.delete_by_query(
            index=self._names["occurrences"], query={"term": {"page_url": page_url}}, refresh=True, conflicts="proceed"
        )
        self._bulk([{
            "_index": self._names["occurrences"], "_id": _doc_id(o.page_url, o.image_url),
            "_source": {"content_hash": o.content_hash, "page_url": o.page_url, "image_url": o.image_url,
                        "title": o.title},
        } for o in occurrences])

    def search_text(self, query: str, k: int) -> list[WebResult]:
        terms = query_terms(query)
        if not terms:
            return []
        resp = self._es.search(
            index=self._names["pages"], size=k,
            query={"multi_match": {"query": " ".join(terms), "fields": ["title^5", "body"],
                                   "type": "most_fields", "operator": "or"}},
            highlight={"fields": {"body": {"fragment_size": 240, "number_of_fragments": 1,
                                           "pre_tags": [""], "post_tags": [""]}}},
            source_includes=["url", "title", "body"],
        )
        out = []
        for hit in resp["hits"]["hits"]:
            src = hit["_source"]
            frags = hit.get("highlight", {}).get("body") or []
            out.append(WebResult(src["title"], src["url"], frags[0] if frags else short_snippet(src["body"])))
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
        try:
            return int(self._es.get(index=self._names["meta"], id="generation")["_source"]["value"])
        except NotFoundError:
            return 0

    def counts(self) -> dict[str, int]:
        return {kind: int(self._es.count(index=self._names[kind])["count"])
                for kind in ("pages", "images", "occurrences")}

    def clear(self) -> None:
        for kind in ("pages", "images", "occurrences"):
            self._es.delete_by_query(index=self._names[kind], query={"match_all": {}}, refresh=True,
                                     conflicts="proceed")
        self._bump()

    def close(self) -> None:
        self._es.close()
