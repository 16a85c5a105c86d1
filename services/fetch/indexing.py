"""Fetched pages into the local search index, so offline `text_search` grows with use.

The index belongs to the search service (services.index.indexer.index_document); it is
imported lazily so a broken or absent index never stops web_visit from answering.
"""

from __future__ import annotations

import asyncio

from services.web.fetcher import Fetched


class LocalIndexSink:
    def __init__(self, index: object | None = None) -> None:
        self._index = index  # a services.index.SearchIndex; None = the process default

    async def add(self, fetched: Fetched) -> None:
        from services.index.indexer import index_document

        await asyncio.to_thread(
            index_document, fetched.final_url, fetched.body, fetched.media_type, None, self._index  # type: ignore[arg-type]
        )
