"""The local search index: Elasticsearch when `TOOLFABRIC_ELASTICSEARCH_URL` is set, else SQLite FTS5."""

from __future__ import annotations

from pathlib import Path

from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.index.base import ImageOccurrence, SearchIndex

__all__ = ["ImageOccurrence", "SearchIndex", "open_index"]

INDEX_FILE = "search-index.sqlite3"


def open_index(common: CommonSettings, elasticsearch_url: str | None = None, data_dir: str | None = None,
               prefix: str | None = None) -> SearchIndex:
    """A new index handle, where `common` names it; arguments override it (tests, the CLI). Close it when done."""
    url = elasticsearch_url if elasticsearch_url is not None else common.elasticsearch_url
    if url:
        from toolfabric_server.index.elastic import ElasticsearchIndex

        return ElasticsearchIndex(url, prefix or common.elasticsearch_prefix)
    from toolfabric_server.index.sqlite import SQLiteIndex

    return SQLiteIndex(Path(data_dir or common.data_dir) / INDEX_FILE)
