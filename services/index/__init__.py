"""The local search index: Elasticsearch when `TOOLFABRIC_ELASTICSEARCH_URL` is set, else SQLite FTS5."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from services.common import settings as common_settings
from services.index.base import ImageOccurrence, SearchIndex

__all__ = ["ImageOccurrence", "SearchIndex", "default_index", "open_index", "reset_default_index"]

INDEX_FILE = "search-index.sqlite3"


def open_index(elasticsearch_url: str | None = None, data_dir: str | None = None,
               prefix: str | None = None) -> SearchIndex:
    """A new index handle; arguments override the settings (tests, the CLI)."""
    common = common_settings.common()
    url = elasticsearch_url if elasticsearch_url is not None else common.elasticsearch_url
    if url:
        from services.index.elastic import ElasticsearchIndex

        return ElasticsearchIndex(url, prefix or common.elasticsearch_prefix)
    from services.index.sqlite import SQLiteIndex

    return SQLiteIndex(Path(data_dir or common.data_dir) / INDEX_FILE)


_default: tuple[int, SearchIndex] | None = None
_lock = threading.Lock()


def default_index() -> SearchIndex:
    """This process's index from the settings (re-opened after a fork)."""
    global _default
    with _lock:
        if _default is None or _default[0] != os.getpid():
            _default = (os.getpid(), open_index())
        return _default[1]


def reset_default_index() -> None:
    """Forget the process's index (after settings changed, e.g. in tests)."""
    global _default
    with _lock:
        if _default is not None and _default[0] == os.getpid():
            _default[1].close()
        _default = None
