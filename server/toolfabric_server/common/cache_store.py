"""The persistent cache tier: entries with an expiry, in SQLite (embedded) or Elasticsearch.

Entries are JSON documents (the value plus provenance); the Redis hot tier sits in front of
this one (see `toolfabric_server.common.cache`). Expired entries are ignored by `get` unless asked
for (replay mode reads recordings whatever their age) and removed by `purge_expired`.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from toolfabric_server.common.sqlite_db import ThreadConnections

CACHE_FILE = "cache.sqlite3"


class PersistentStore(ABC):
    """Blocking key → (entry JSON, expires_at) store; async callers use `asyncio.to_thread`."""

    name = "store"

    @abstractmethod
    def get(self, key: str, include_expired: bool = False) -> dict[str, Any] | None:
        """The entry stored under `key`, or None (also when expired, unless `include_expired`)."""

    @abstractmethod
    def put(self, key: str, entry: dict[str, Any], expires_at: float) -> None:
        """Store or replace `entry` (a JSON object with `provider`, `fetched_at`, `cost_units`)."""

    @abstractmethod
    def delete(self, keys: list[str]) -> int:
        """Delete the entries of `keys` (a deleted trajectory's); returns how many there were."""

    @abstractmethod
    def purge_expired(self, now: float | None = None) -> int:
        """Delete entries past their expiry; returns how many."""

    @abstractmethod
    def clear(self) -> None:
        """Delete everything."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache(
  key TEXT PRIMARY KEY, namespace TEXT NOT NULL, entry TEXT NOT NULL, provider TEXT NOT NULL,
  fetched_at REAL NOT NULL, cost_units REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cache_expiry ON cache(expires_at);
"""


def _namespace(key: str) -> str:
    return key.split(":", 1)[0] if ":" in key else ""


class SQLiteCacheStore(PersistentStore):
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self._cons = ThreadConnections(Path(path), _SCHEMA)

    def get(self, key: str, include_expired: bool = False) -> dict[str, Any] | None:
        row = self._cons.get().execute("SELECT entry, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None or (not include_expired and row[1] <= time.time()):
            return None
        return dict(json.loads(row[0]))

    def put(self, key: str, entry: dict[str, Any], expires_at: float) -> None:
        self._cons.get().execute(
            "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, _namespace(key), json.dumps(entry, ensure_ascii=False), str(entry.get("provider", "")),
             float(entry.get("fetched_at", time.time())), float(entry.get("cost_units", 0.0)), expires_at),
        )

    def delete(self, keys: list[str]) -> int:
        con, deleted = self._cons.get(), 0
        for start in range(0, len(keys), 500):  # SQLite's bound on host parameters
            part = keys[start:start + 500]
            cur = con.execute(f"DELETE FROM cache WHERE key IN ({','.join('?' * len(part))})", part)  # noqa: S608
            deleted += int(cur.rowcount)
        return deleted

    def purge_expired(self, now: float | None = None) -> int:
        cur = self._cons.get().execute("DELETE FROM cache WHERE expires_at <= ?", (now or time.time(),))
        return int(cur.rowcount)

    def clear(self) -> None:
        self._cons.get().execute("DELETE FROM cache")

    def close(self) -> None:
        self._cons.close()


class ElasticsearchCacheStore(PersistentStore):
    """One index `<prefix>-cache`; the entry is kept in `_source`, unindexed (`enabled: false`)."""

    name = "elasticsearch"
    _MAPPINGS = {"properties": {
        "namespace": {"type": "keyword"}, "provider": {"type": "keyword"},
        "fetched_at": {"type": "date", "format": "epoch_millis"},
        "expires_at": {"type": "date", "format": "epoch_millis"},
        "cost_units": {"type": "float"},
        "entry": {"type": "object", "enabled": False},
    }}

    def __init__(self, url: str, prefix: str = "toolfabric", timeout_s: float = 10.0) -> None:
        from elasticsearch import Elasticsearch

        self._es = Elasticsearch(url, request_timeout=timeout_s)
        self._index = f"{prefix}-cache"
        if not self._es.indices.exists(index=self._index):
            try:
                self._es.indices.create(index=self._index, mappings=self._MAPPINGS)
            except Exception as exc:  # created by another worker in between
                if "resource_already_exists_exception" not in str(exc):
                    raise

    def get(self, key: str, include_expired: bool = False) -> dict[str, Any] | None:
        from elasticsearch import NotFoundError

        try:
            src = self._es.get(index=self._index, id=key)["_source"]
        except NotFoundError:
            return None
        if not include_expired and float(src["expires_at"]) / 1000.0 <= time.time():
            return None
        return dict(src["entry"])

    def put(self, key: str, entry: dict[str, Any], expires_at: float) -> None:
        self._es.index(index=self._index, id=key, refresh="wait_for", document={
            "namespace": _namespace(key), "provider": str(entry.get("provider", "")),
            "fetched_at": int(float(entry.get("fetched_at", time.time())) * 1000),
            "expires_at": int(expires_at * 1000), "cost_units": float(entry.get("cost_units", 0.0)),
            "entry": entry,
        })

    def delete(self, keys: list[str]) -> int:
        if not keys:
            return 0
        resp = self._es.delete_by_query(index=self._index, query={"ids": {"values": keys}}, refresh=True,
                                        conflicts="proceed")
        return int(resp.get("deleted", 0))

    def purge_expired(self, now: float | None = None) -> int:
        resp = self._es.delete_by_query(
            index=self._index, query={"range": {"expires_at": {"lte": int((now or time.time()) * 1000)}}},
            refresh=True, conflicts="proceed",
        )
        return int(resp.get("deleted", 0))

    def clear(self) -> None:
        self._es.delete_by_query(index=self._index, query={"match_all": {}}, refresh=True, conflicts="proceed")

    def close(self) -> None:
        self._es.close()


def open_store(elasticsearch_url: str | None, data_dir: str, prefix: str = "toolfabric") -> PersistentStore:
    """Elasticsearch when a URL is configured, the embedded SQLite file otherwise."""
    if elasticsearch_url:
        return ElasticsearchCacheStore(elasticsearch_url, prefix)
    return SQLiteCacheStore(Path(data_dir) / CACHE_FILE)
