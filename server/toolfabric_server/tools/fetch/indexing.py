"""Fetched pages into the local search index, so offline `text_search` grows with use.

The index belongs to the search service (toolfabric_server.index.indexer.index_document); it is
imported and opened lazily so a broken or absent index never stops web_visit from answering.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.web.fetcher import Fetched


class LocalIndexSink:
    def __init__(self, common: CommonSettings, index: Any = None) -> None:
        # `index`: a toolfabric_server.index.SearchIndex; None = the one the settings name, opened on first use.
        self._common, self._index, self._opened = common, index, False
        self._lock = threading.Lock()

    def _target(self) -> Any:
        with self._lock:
            if self._index is None:
                from toolfabric_server.index import open_index

                self._index, self._opened = open_index(self._common), True
            return self._index

    async def add(self, fetched: Fetched) -> None:
        from toolfabric_server.index.indexer import index_document

        def add() -> None:
            index_document(fetched.final_url, fetched.body, fetched.media_type, index=self._target(),
                           max_pixels=self._common.max_image_pixels,
                           max_pixels_per_byte=self._common.max_image_pixels_per_byte)

        await asyncio.to_thread(add)

    def close(self) -> None:
        """Close the index this sink opened (not one it was given)."""
        with self._lock:
            if self._opened and self._index is not None:
                self._index.close()
            self._index, self._opened = None, False
